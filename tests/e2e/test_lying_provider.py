"""A provider that commits to a wrong result loses the vote, is slashed, and the requester
still gets the right answer (redundancy 3: two honest providers outvote one liar)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.checks import assert_paid_exactly
from tests.e2e.market import REPO, Market
from tests.e2e.test_honest import check_matmul

pytestmark = pytest.mark.integration


def matmul_spec(directory: Path, redundancy: int) -> Path:
    """A copy of the matmul example asking for ``redundancy`` providers."""
    directory.mkdir(parents=True, exist_ok=True)
    source = REPO / "examples" / "matmul"
    (directory / "main.py").write_bytes((source / "main.py").read_bytes())
    spec = (source / "job.yaml").read_text()
    spec = spec.replace("redundancy: 2", f"redundancy: {redundancy}")
    assert f"redundancy: {redundancy}" in spec
    (directory / "job.yaml").write_text(spec)
    return directory / "job.yaml"


def test_a_wrong_result_loses_the_vote_and_is_slashed(market: Market, tmp_path: Path) -> None:
    honest = [market.account("provider", i).address for i in range(2)]
    liar = market.funded_account()
    # Two honest providers and the liar: a redundancy-3 job must use all three.
    market.stop("provider-2")
    try:
        market.start_provider(liar, 3, module="tests.e2e.lying_provider")
        market.wait_providers(lambda s: s == {*honest, liar.address}, timeout=60)

        requester = market.new_requester()
        everyone = [requester.address, market.coordinator_address, *honest, liar.address]
        before = market.ledger(everyone)
        submitted = market.submit(matmul_spec(tmp_path / "spec", 3), requester)
        job = submitted["job"]
        assert job["state"] == "settled", job

        outcomes = {p["address"]: p["outcome"] for p in job["providers"]}
        assert outcomes == {honest[0]: "paid", honest[1]: "paid", liar.address: "slashed"}
        cids = {p["address"]: p["result_cid"] for p in job["providers"]}
        assert cids[honest[0]] == cids[honest[1]] == job["result_cid"] != cids[liar.address]

        fetched = market.cli_json("job", "result", job["job_id"], "-o", str(tmp_path / "out"))
        check_matmul(Path(fetched["path"]), market.seed(job["job_id"]), tmp_path)

        slashes = market.job_events(job["job_id"], "ProviderSlashed")
        assert [e.args["provider"] for e in slashes] == [liar.address]
        amount = int(slashes[0].args["amount"])
        assert amount > 0
        after = market.ledger(everyone)
        assert_paid_exactly(
            market, job, before, after, escrow=submitted["escrow"], slashed={liar.address: amount}
        )
        assert market.chain().provider_info(liar.address).slashed == 1
    finally:
        if any(p.name == "provider-3" for p in market.state.processes):
            market.stop("provider-3")
        market.restart_devnet_provider(2)
        market.wait_providers(
            lambda s: market.account("provider", 2).address in s and liar.address not in s,
            timeout=60,
        )
