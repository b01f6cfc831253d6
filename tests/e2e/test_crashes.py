"""Crashes mid-job: a provider SIGKILLed, the coordinator SIGKILLed and restarted, and the
coordinator gone for good (the requester reclaims the escrow after the deadline)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from protocol.ids import parse_job_id, to_wei
from tests.e2e.checks import assert_paid_exactly
from tests.e2e.market import TERMINAL, Market

pytestmark = pytest.mark.integration

JOB_SECONDS = 8

SLOW_JOB = f"""\
import os, pathlib, time
time.sleep({JOB_SECONDS})
out = pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"])
(out / "done.txt").write_text("seed " + os.environ["GPUMARKET_SEED"] + "\\n")
"""


def slow_spec(directory: Path, redundancy: int = 2) -> Path:
    """A job that runs long enough to be interrupted, with a deterministic output."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text(SLOW_JOB)
    (directory / "job.yaml").write_text(
        "name: slow\n"
        "runtime: {kind: torch, entrypoint: main.py}\n"
        "inputs:\n  - {name: code, path: ./}\n"
        "resources: {gpus: 0}\n"
        f"verification: {{redundancy: {redundancy}, compare: exact}}\n"
        'price: {max_per_provider: "1.00"}\n'
        "timeout: 2m\n"
        "max_output: 1MiB\n"
    )
    return directory / "job.yaml"


def running(view: dict[str, Any]) -> bool:
    return view["state"] == "running" and any(p["state"] == "running" for p in view["providers"])


def everyone(market: Market, requester: str) -> list[str]:
    accounts = [requester, market.coordinator_address]
    return accounts + [a.address for a in market.state.accounts if a.role == "provider"]


def test_a_restarted_coordinator_settles_exactly_once(market: Market, tmp_path: Path) -> None:
    requester = market.new_requester()
    before = market.ledger(everyone(market, requester.address))
    submitted = market.submit(slow_spec(tmp_path / "spec"), requester, wait=False)
    job_id = submitted["job_id"]
    market.wait_job(job_id, running, timeout=60, what="running")
    env = market.coordinator_env()
    market.kill("coordinator")
    time.sleep(JOB_SECONDS)  # the providers finish and find nobody to commit to
    market.restart_coordinator(env)
    final = market.wait_job(job_id, lambda v: v["state"] in TERMINAL, timeout=150, what="done")
    assert final["state"] == "settled", final
    assert len(market.job_events(job_id, "JobSettled")) == 1
    after = market.ledger(everyone(market, requester.address))
    assert_paid_exactly(market, final, before, after, escrow=submitted["escrow"])
    # Nothing settles twice, even a while later.
    time.sleep(3)
    assert len(market.job_events(job_id, "JobSettled")) == 1


def test_the_requester_reclaims_when_the_coordinator_is_gone(
    market: Market, tmp_path: Path
) -> None:
    requester = market.new_requester()
    addresses = everyone(market, requester.address)
    before = market.ledger(addresses)
    submitted = market.submit(slow_spec(tmp_path / "spec"), requester, wait=False)
    job_id = submitted["job_id"]
    market.wait_job(job_id, running, timeout=60, what="running")
    env = market.coordinator_env()
    market.kill("coordinator")
    try:
        auth = ["--account", requester.name, "--password-file", str(market.password_file)]
        early = market.cli("job", "cancel", job_id, *auth)
        assert early.returncode == 1 and "settle deadline" in early.stderr, early.stderr

        chain = market.chain()
        info = chain.get_job(bytes.fromhex(job_id[2:]))  # type: ignore[arg-type]
        market.increase_time(info.terms.settle_deadline - chain.now() + 1)
        done = market.cli("job", "cancel", job_id, *auth)
        assert done.returncode == 0, done.stderr
        assert "reclaimed" in done.stdout

        escrow = to_wei(submitted["escrow"])
        reclaimed = market.job_events(job_id, "JobReclaimed")
        assert len(reclaimed) == 1 and int(reclaimed[0].args["refund"]) == escrow
        assert not market.job_events(job_id, "JobSettled")
        after = market.ledger(addresses)
        assert after.owed[requester.address] - before.owed[requester.address] == escrow
        assert after.owed[market.coordinator_address] == before.owed[market.coordinator_address]
        for address in addresses[2:]:
            assert after.earned[address] == before.earned[address]
            assert after.stake[address] == before.stake[address]
        again = market.cli("job", "cancel", job_id, *auth)
        assert again.returncode == 1 and "nothing to cancel" in again.stderr
    finally:
        market.restart_coordinator(env)


def test_a_killed_provider_is_replaced(market: Market, tmp_path: Path) -> None:
    requester = market.new_requester()
    before = market.ledger(everyone(market, requester.address))
    submitted = market.submit(slow_spec(tmp_path / "spec"), requester, wait=False)
    job_id = submitted["job_id"]
    view = market.wait_job(job_id, running, timeout=60, what="running")
    victim = next(p["address"] for p in view["providers"] if p["state"] == "running")
    name = market.provider_name(victim)
    market.kill(name)
    try:
        # The replacement and the other seat reveal; the killed seat could still commit until
        # its own commit deadline, so settling earlier would cut it out: the job waits.
        market.wait_job(job_id, lambda v: v["state"] == "revealing", timeout=90, what="revealing")
        waiting = market.job(job_id)
        assert waiting["state"] == "revealing", waiting
        chain = market.chain()
        terms = chain.job_terms(parse_job_id(job_id))
        killed = next(p for p in waiting["providers"] if p["address"] == victim)
        deadline = int(killed["assigned_at"]) + terms.commit_window
        market.increase_time(max(0, deadline - chain.now()) + 1)
        final = market.wait_job(
            job_id, lambda v: v["state"] in TERMINAL, timeout=60, what="finished"
        )
        assert final["state"] == "settled", final
        paid = {p["address"] for p in final["providers"] if p["outcome"] == "paid"}
        assert len(paid) == 2 and victim not in paid, final["providers"]
        after = market.ledger(everyone(market, requester.address))
        assert_paid_exactly(market, final, before, after, escrow=submitted["escrow"])
    finally:
        market.restart_devnet_provider(int(name.rsplit("-", 1)[1]))
        market.wait_providers(lambda s: victim in s, timeout=60)
