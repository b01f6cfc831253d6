"""A cheater under ``redundancy: auto`` is caught by a hidden spot check: its lone seat
commits, the coordinator then seats a checker (every devnet provider is a newcomer, and
newcomers are always checked), the two disagree, a tie-breaker decides, the liar is slashed
on chain, the honest two are paid, the requester gets the right result and the coordinator's
standing of the liar falls below that of the providers that caught it.

The liar is made the primary deterministically: when the job is matched the market holds
only the liar and devnet provider 1, which declines every offer (it allow-lists another
coordinator) but is live and shares the liar's fingerprint, so the liar counts as checkable
(the matcher seats a lone exact primary only where another operator could check it). The
liar then holds its corrupted result (``LYING_PROVIDER_HOLD``) until devnet providers 0 and
2, which will check it, are back in the coordinator's book.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devnet.process import is_alive
from tests.e2e.checks import assert_paid_exactly
from tests.e2e.lying_provider import HOLD_ENV
from tests.e2e.market import REPO, Market
from tests.e2e.test_honest import check_matmul

pytestmark = pytest.mark.integration

LIAR_INDEX = 4
"""Its own devnet slot (work dir and keystore), unused by the other modules' providers."""
HONEST = (0, 2)
"""The devnet providers that check the liar (the checker and the tie-breaker)."""
DECLINER = 1
"""The devnet provider that keeps the liar checkable while declining the job."""
ELSEWHERE = "0x000000000000000000000000000000000000dEaD"
"""The only coordinator the decliner works for."""
JOB_TIMEOUT_S = 480.0
"""Three runs in a row (primary, checker, tie-breaker) and two daemon restarts."""


def auto_spec(directory: Path) -> Path:
    """A copy of the matmul example that leaves verification to the coordinator."""
    directory.mkdir(parents=True, exist_ok=True)
    source = REPO / "examples" / "matmul"
    (directory / "main.py").write_bytes((source / "main.py").read_bytes())
    spec = (source / "job.yaml").read_text().replace("redundancy: 2", "redundancy: auto")
    assert "redundancy: auto" in spec
    (directory / "job.yaml").write_text(spec)
    return directory / "job.yaml"


def wait_held(hold: Path, waiting: Future[Any], timeout: float) -> str:
    """The job id the liar holds its result for (once it ran it and corrupted it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (hold / "held").exists():
            return "0x" + (hold / "held").read_text().strip()
        if waiting.done():
            raise AssertionError(f"submit returned before the liar ran: {waiting.result()}")
        time.sleep(0.25)
    raise AssertionError(f"the liar held no result within {timeout:g}s")


def wait_ready_to_match(market: Market, addresses: set[str], timeout: float) -> None:
    """Until each address is listed, registered and has free stake in the coordinator's book."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = {p["address"]: p for p in market.providers()}
        if all(
            a in seen and seen[a]["registered"] and int(seen[a]["free_stake"]) > 0
            for a in addresses
        ):
            return
        time.sleep(0.5)
    raise AssertionError(f"providers {addresses} not ready to match; book: {seen}")


def restore(market: Market) -> None:
    """Put back the devnet's three providers as they were; the liar leaves the market."""
    liar = f"provider-{LIAR_INDEX}"
    if any(p.name == liar for p in market.state.processes):
        market.stop(liar)
    market.stop(f"provider-{DECLINER}")  # it runs with another allow-list
    for index in range(3):
        if not is_alive(market.record(f"provider-{index}").pid):
            market.restart_devnet_provider(index)
    devnet = {market.account("provider", i).address for i in range(3)}
    market.wait_providers(lambda s: devnet <= s and len(s) == len(devnet), timeout=60)


def test_a_spot_checked_cheater_loses_to_a_tie_breaker_and_is_slashed(
    market: Market, tmp_path: Path
) -> None:
    honest = [market.account("provider", i).address for i in HONEST]
    liar = market.funded_account()
    hold = tmp_path / "hold"
    for index in range(3):
        market.stop(f"provider-{index}")
    try:
        market.start_provider(
            liar, LIAR_INDEX, module="tests.e2e.lying_provider", extra_env={HOLD_ENV: str(hold)}
        )
        decliner = market.account("provider", DECLINER)
        market.start_provider(decliner, DECLINER, extra_env={"PROVIDER_COORDINATORS": ELSEWHERE})
        wait_ready_to_match(market, {liar.address, decliner.address}, timeout=60)
        market.wait_providers(lambda s: s == {liar.address, decliner.address}, timeout=60)

        requester = market.new_requester()
        everyone = [requester.address, market.coordinator_address, *honest, liar.address]
        before = market.ledger(everyone)
        with ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(
                market.submit, auto_spec(tmp_path / "spec"), requester, timeout=JOB_TIMEOUT_S
            )
            job_id = wait_held(hold, waiting, timeout=180)
            # The liar holds the job's only seat (the decliner said no): nobody checks it yet.
            view = market.job(job_id)
            assert view["redundancy"] == 1, view
            assert [p["address"] for p in view["providers"]] == [liar.address], view
            for index in HONEST:
                market.restart_devnet_provider(index)
            wait_ready_to_match(market, {*honest, liar.address}, timeout=60)
            declined = market.api(f"/jobs/{job_id}/explain")["declines"]
            assert {d["address"] for d in declined} <= {decliner.address}, declined
            (hold / "release").touch()
            submitted = waiting.result(timeout=JOB_TIMEOUT_S + 30)

        job = submitted["job"]
        assert job["job_id"] == job_id
        # --wait returns only at a terminal state, never at "disputed".
        assert job["state"] == "settled", job
        seats = sorted(job["providers"], key=lambda p: p["seat"])
        primary, checker, tie_breaker = (p["address"] for p in seats)
        assert primary == liar.address and {checker, tie_breaker} == set(honest), seats
        outcomes = {p["address"]: p["outcome"] for p in seats}
        assert outcomes == {liar.address: "slashed", checker: "paid", tie_breaker: "paid"}
        cids = {p["address"]: p["result_cid"] for p in seats}
        assert cids[checker] == cids[tie_breaker] == job["result_cid"] != cids[liar.address]

        fetched = market.cli_json("job", "result", job_id, "-o", str(tmp_path / "out"))
        check_matmul(Path(fetched["path"]), market.seed(job_id), tmp_path)

        # The event stream shows the hidden check, the split and the tie-breaker, in order.
        events = market.events(job_id)
        states = [e["state"] for e in events]
        spot = [i for i, e in enumerate(events) if e["detail"].get("spot_check") == checker]
        disputed = states.index("disputed") if "disputed" in states else -1
        tie = [
            i
            for i, e in enumerate(events)
            if e["detail"].get("tie_breaker") in (tie_breaker, [tie_breaker])
        ]
        assert spot and tie and 0 <= spot[0] < disputed < tie[0], events
        assert states[-1] == "settled" and states.count("settled") == 1, states

        slashes = market.job_events(job_id, "ProviderSlashed")
        assert [e.args["provider"] for e in slashes] == [liar.address]
        amount = int(slashes[0].args["amount"])
        assert amount > 0

        # The coordinator records the burned amount from the ProviderSlashed event (its
        # chain watcher), which may come just after the settled view --wait returned.
        def slashed(v: dict[str, Any]) -> str | None:
            return next(p["slashed"] for p in v["providers"] if p["address"] == liar.address)

        view = market.wait_job(job_id, lambda v: slashed(v) is not None, timeout=30, what="slashed")
        assert int(str(slashed(view))) == amount
        assigned = market.job_events(job_id, "ProviderAssigned")
        assert [(e.args["provider"], int(e.args["seat"])) for e in assigned] == [
            (primary, 0),
            (checker, 1),
            (tie_breaker, 2),
        ]
        after = market.ledger(everyone)
        assert_paid_exactly(
            market, job, before, after, escrow=submitted["escrow"], slashed={liar.address: amount}
        )
        assert market.chain().provider_info(liar.address).slashed == 1

        # The coordinator's standing of each: the liar (a fresh account) has one slash and
        # no success, and now ranks below both honest providers.
        standing = {a: market.standing(a) for a in (liar.address, *honest)}
        assert standing[liar.address]["outcomes"]["slashes"] == 1, standing
        assert standing[liar.address]["outcomes"]["successes"] == 0, standing
        for address in honest:
            assert standing[address]["outcomes"]["successes"] >= 1, standing
            assert standing[address]["outcomes"]["slashes"] == 0, standing
            assert standing[liar.address]["lower_bound"] < standing[address]["lower_bound"]
            assert standing[liar.address]["mean"] < standing[address]["mean"]
    finally:
        (hold / "release").parent.mkdir(parents=True, exist_ok=True)
        (hold / "release").touch()
        restore(market)
