"""Money in and out through the CLI: quote the matmul example, submit it with the cap the
quote gives, and check what it then paid against the quote and against ``job cost``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.checks import billed_pay
from tests.e2e.market import REPO, Market

pytestmark = pytest.mark.integration

SPEC = REPO / "examples" / "matmul" / "job.yaml"


def test_quote_then_submit_pays_the_quoted_prices_and_cost_adds_up(
    market: Market, tmp_path: Path
) -> None:
    requester = market.new_requester()
    book = market.cli_json("market", "providers")
    assert book["total"] >= 2
    # Devnet providers charge half as much per CPU-hour as per GPU-hour; the spec asks for
    # no GPU, so every seat is billed at its provider's CPU-hour rate.
    cpu_rate = {p["address"].lower(): int(p["price_per_cpu_hour"]) for p in book["providers"]}
    for p in book["providers"]:
        assert 0 < int(p["price_per_cpu_hour"]) < int(p["price_per_gpu_hour"])

    quote = market.cli_json("job", "quote", str(SPEC), "--account", requester.name)
    options = {o["redundancy"]: o for o in quote["options"]}
    two = options["2"]
    assert two["requested"] and two["start"] == "now" and len(two["providers"]) == 2
    assert two["affordable"] is True and int(quote["funds"]["balance"]) >= int(two["escrow"])
    assert int(two["escrow"]) == 4 * int(quote["price_cap"]) + int(quote["fee"])
    quoted = {p["address"]: p for p in two["providers"]}

    args = ["job", "submit", str(SPEC), "--account", requester.name, "--wait"]
    args += ["--password-file", str(market.password_file), "--cap", "auto"]
    submitted = market.cli_json(*args)
    job = submitted["job"]
    assert job["state"] == "settled", job
    job_id = job["job_id"]
    cap = int(submitted["price_cap"])
    assert cap == min(-(-max(int(p["price"]) for p in quoted.values()) * 12 // 10), 2_500_000)

    cost = market.cli_json("job", "cost", job_id, "--account", requester.name)
    assert cost["source"] == "chain" and cost["state"] == "settled"
    escrow, fee, refund = int(cost["escrow"]), int(cost["fee"]), int(cost["refund"])
    paid = [s for s in cost["seats"] if s["outcome"] == "paid"]
    assert len(paid) == 2
    assert escrow == sum(int(s["paid"]) for s in paid) + fee + refund
    assert escrow == 4 * cap + 100_000 and fee == 100_000
    assert int(cost["gas_wei"]) > 0 and cost["gas_txs"] == [submitted["tx"]]
    assert cost["bytes_uploaded"] > 0 and cost["bytes_downloaded"] == 0

    overlap = 0
    for seat in paid:
        pay = int(seat["paid"])
        assert int(seat["rate_per_hour"]) == cpu_rate[seat["provider"].lower()]
        assert pay == billed_pay(int(seat["price"]), int(seat["rate_per_hour"]), seat["billed_ms"])
        q = quoted.get(seat["provider"])
        if q is not None:  # a provider the quote chose was seated at the quoted terms
            overlap += 1
            assert int(q["price"]) == int(seat["price"])
            assert int(q["rate_per_hour"]) == int(seat["rate_per_hour"])
            assert pay == billed_pay(int(q["price"]), int(q["rate_per_hour"]), seat["billed_ms"])
    assert overlap >= 1, (quoted, paid)

    fetched = market.cli_json("job", "result", job_id, "-o", str(tmp_path / "result"))
    assert fetched["result_cid"] == job["result_cid"]
    again = market.cli_json("job", "cost", job_id, "--account", requester.name)
    assert again["bytes_downloaded"] > 0

    shown = market.cli("job", "cost", job_id, "--account", requester.name)
    assert shown.returncode == 0 and "tokens" in shown.stdout and "ETH" in shown.stdout
    listed = market.cli("job", "list", "--account", requester.name)
    assert listed.returncode == 0, listed.stderr
    assert job_id in listed.stdout  # whole, though the terminal is narrow (no tty: 80)

    totals = market.cli_json("job", "cost", "--since", "1d", "--account", requester.name)
    assert totals["jobs"] == 1 and int(totals["escrow"]) == escrow
    assert int(totals["paid"]) + int(totals["fee"]) + int(totals["refund"]) == escrow


def test_a_spec_needing_packages_is_quoted_only_where_the_python_has_them(
    market: Market, tmp_path: Path
) -> None:
    requester = market.new_requester()
    text = SPEC.read_text()
    runtime = "runtime: {kind: torch, entrypoint: main.py}"
    assert runtime in text
    for name, packages in (("has", "{numpy: '>=1', Torch: ''}"), ("lacks", "{no-such-lib: ''}")):
        folder = tmp_path / name
        shutil.copytree(SPEC.parent, folder)
        (folder / "job.yaml").write_text(
            text.replace(runtime, runtime.replace("}", f", packages: {packages}}}"))
        )
    has = market.cli_json("job", "quote", str(tmp_path / "has" / "job.yaml"), "-a", requester.name)
    two = {o["redundancy"]: o for o in has["options"]}["2"]
    assert two["start"] == "now" and len(two["providers"]) == 2
    lacks = market.cli_json(
        "job", "quote", str(tmp_path / "lacks" / "job.yaml"), "-a", requester.name
    )
    for option in lacks["options"]:
        assert option["start"] == "unmatched" and option["providers"] == []
        assert list(option["filtered"]) == ["its Python lacks no-such-lib"]
