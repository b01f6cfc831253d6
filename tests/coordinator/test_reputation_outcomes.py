"""Every verified outcome moves reputation, each seat exactly once: paid, slashed, a fault on
the provider's side, a timeout, a job whose own code fails everywhere (nobody's fault), and
the standing a provider reads back from ``GET /providers/{address}/standing``."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from coordinator.api import create_app
from coordinator.matching.book import ProviderBook
from coordinator.metrics import Metrics
from coordinator.signals import Signals
from coordinator.store import AsyncStore, JobRecord, ReputationRecord, SeatFailure
from coordinator.verification.reputation import ReputationBook
from devnet.harness import Harness, harness
from proofs.reputation import ReputationParams, Verified
from protocol.ids import Address
from protocol.lifecycle import JobState, Outcome, SeatState
from protocol.messages import FailureKind

S = JobState
P = SeatState
PRIOR = ReputationParams()
RATES = [10**6, 2 * 10**6, 3 * 10**6]


def settled(job: JobRecord) -> bool:
    return job.state is S.SETTLED


async def counts(h: Harness, address: str) -> tuple[int, int, int, int, int]:
    r = await h.store.reputation(address)
    if r is None:
        return (0, 0, 0, 0, 0)
    return (r.successes, r.slashes, r.faults, r.timeouts, r.withheld)


async def row(h: Harness, address: str) -> ReputationRecord:
    r = await h.store.reputation(address)
    assert r is not None, f"no reputation stored for {address}"
    return r


async def test_a_settled_job_counts_a_success_for_each_paid_seat(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        job_id = await h.create_job(2)
        await h.run(job_id, settled)
        slots = await h.slots(job_id)
        assert all(s.outcome is Outcome.PAID and s.reputation_recorded for s in slots)
        rep = h.driver.closer.reputation
        for s in slots:
            assert await counts(h, s.address) == (1, 0, 0, 0, 0)
            stored = await row(h, s.address)
            assert stored.alpha == pytest.approx(PRIOR.prior_alpha + 1, abs=1e-6)
            assert stored.beta == pytest.approx(PRIOR.prior_beta, abs=1e-6)
            # pushed to the matcher's columns, not only stored
            assert h.book.entries[s.address].reputation == pytest.approx(rep.lower_bound(s.address))
            assert h.book.entries[s.address].reputation > 0
        assert await counts(h, h.providers[2].address) == (0, 0, 0, 0, 0)


async def test_the_loser_of_a_vote_is_counted_slashed(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        cheat = h.providers[0]
        cheat.result = b"wrong"
        job_id = await h.create_job(3)
        await h.run(job_id, settled)
        outcomes = {s.address: s.outcome for s in await h.slots(job_id)}
        assert outcomes[Address(cheat.address)] is Outcome.SLASHED
        assert await counts(h, cheat.address) == (0, 1, 0, 0, 0)
        slashed = await row(h, cheat.address)
        assert slashed.beta == pytest.approx(PRIOR.prior_beta + PRIOR.slash_weight, abs=1e-6)
        for honest in h.providers[1:]:
            assert await counts(h, honest.address) == (1, 0, 0, 0, 0)


async def test_a_failure_on_the_providers_side_is_a_fault(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        broken = h.providers[0]
        broken.fail_with = (FailureKind.SANDBOX_ERROR, "disk full")
        job_id = await h.create_job(2)
        job = await h.run(job_id, lambda j: j.state is S.REVEALING)
        failed = (await h.slots(job_id))[0]
        assert failed.address == broken.address and failed.failure is SeatFailure.FAULT
        assert await counts(h, broken.address) == (0, 0, 0, 0, 0)  # not before the job ends
        deadline = failed.assigned_at + job.commit_window  # type: ignore[operator]
        h.world.advance(deadline - h.world.time + 1)
        await h.run(job_id, settled)
        assert await counts(h, broken.address) == (0, 0, 1, 0, 0)
        assert (await row(h, broken.address)).beta == pytest.approx(PRIOR.prior_beta + 1, 1e-6)
        for other in h.providers[1:]:
            assert await counts(h, other.address) == (1, 0, 0, 0, 0)


async def test_a_job_whose_own_code_fails_everywhere_is_nobodys_fault(tmp_path: Path) -> None:
    async with harness(tmp_path, 2, fail_with=(FailureKind.NONZERO_EXIT, "exit 3")) as h:
        job_id = await h.create_job(2)
        job = await h.run(job_id, lambda j: j.abort_tx is not None)
        await h.step(job_id)  # the terminal step counts the seats
        assert job.state is S.FAILED
        slots = await h.slots(job_id)
        assert all(s.failure is SeatFailure.JOB and s.reputation_recorded for s in slots)
        for p in h.providers:
            assert await counts(h, p.address) == (0, 0, 0, 0, 0)


async def test_no_commitment_by_the_commit_deadline_is_a_timeout(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        slow = h.providers[2]
        slow.commit_delay_s = 10**6  # acknowledges its assignment, never commits
        job_id = await h.create_job(3)
        job = await h.run(job_id, lambda j: j.state is S.RUNNING)
        for _ in range(3):
            await h.step(job_id)
        seat = next(s for s in await h.slots(job_id) if s.address == slow.address)
        assert seat.state is P.RUNNING
        h.world.advance(seat.assigned_at + job.commit_window - h.world.time + 1)  # type: ignore[operator]
        await h.run(job_id, settled)
        seat = next(s for s in await h.slots(job_id) if s.address == slow.address)
        assert seat.state is P.FAILED and seat.failure is SeatFailure.TIMEOUT
        assert await counts(h, slow.address) == (0, 0, 0, 1, 0)
        for other in h.providers[:2]:
            assert await counts(h, other.address) == (1, 0, 0, 0, 0)


async def test_a_provider_that_never_answers_its_assignment_is_a_timeout(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        mute = h.providers[0]
        mute.silent = True  # the assignment's delivery times out
        job_id = await h.create_job(2)
        job = await h.run(job_id, lambda j: j.state is S.REVEALING)
        failed = (await h.slots(job_id))[0]
        assert failed.address == mute.address and failed.failure is SeatFailure.TIMEOUT
        h.world.advance(failed.assigned_at + job.commit_window - h.world.time + 1)  # type: ignore[operator]
        await h.run(job_id, settled)
        assert await counts(h, mute.address) == (0, 0, 0, 1, 0)


async def test_each_seat_is_counted_once_across_steps_and_restarts(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        job_id = await h.create_job(2)
        await h.run(job_id, settled)
        for _ in range(3):
            assert await h.driver.step(job_id)
        job = await h.job(job_id)
        assert await h.driver.closer.reputation.record_job(h.store, h.book, job) == {}
        # A step that read the seats before another counted them counts nothing.
        stale = (await h.slots(job_id))[0]
        stale = replace(stale, reputation_recorded=False)
        assert not await h.driver.closer.reputation.record(h.store, h.book, stale, Verified.SUCCESS)
        restarted = ReputationBook(time.time)  # a new process: loaded from the store
        restarted.load(await h.store.reputation_records())
        assert await restarted.record_job(h.store, h.book, job) == {}
        for s in await h.slots(job_id):
            assert await counts(h, s.address) == (1, 0, 0, 0, 0)
        assert await h.store.unrecorded_jobs() == []


async def test_a_job_ended_before_a_crash_is_counted_on_the_next_look(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        job_id = await h.create_job(2)
        await h.run(job_id, lambda j: j.state is S.REVEALING)
        # Count nothing at settlement, as if the process died right after the chain settled.
        closer = h.driver.closer
        real = closer._record_reputation

        async def crash(job: JobRecord) -> None:
            return None

        closer._record_reputation = crash  # type: ignore[method-assign]
        await h.run(job_id, settled)
        closer._record_reputation = real  # type: ignore[method-assign]
        assert await h.store.unrecorded_jobs() == [job_id]
        assert await h.driver.step(job_id)  # woken on start: the terminal step counts
        assert await h.store.unrecorded_jobs() == []
        for s in await h.slots(job_id):
            assert await counts(h, s.address) == (1, 0, 0, 0, 0)


class Backend:
    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self.book = ProviderBook(time.time)
        self.signals = Signals()
        self.metrics = Metrics()

    async def notice(self, job_id: str) -> JobRecord:
        raise NotImplementedError

    def chain_block(self) -> int:
        return 0

    def settle_batches(self) -> int:
        return 0


async def test_the_standing_endpoint_shows_what_was_counted(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        cheat = h.providers[0]
        cheat.result = b"wrong"
        job_id = await h.create_job(3)
        await h.run(job_id, settled)
        transport = httpx.ASGITransport(app=create_app(Backend(h.store)))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
            r = await client.get(f"/providers/{cheat.address.lower()}/standing")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["address"] == cheat.address
            assert body["outcomes"] == {
                "successes": 0,
                "slashes": 1,
                "faults": 0,
                "timeouts": 0,
                "withheld": 0,
            }
            assert body["beta"] == pytest.approx(PRIOR.prior_beta + PRIOR.slash_weight, 1e-6)
            assert body["newcomer"] and not body["established"]
            honest = (await client.get(f"/providers/{h.providers[1].address}/standing")).json()
            assert honest["outcomes"]["successes"] == 1
            assert honest["lower_bound"] > body["lower_bound"]
            assert honest["evidence"] == pytest.approx(1.0, abs=1e-6)
            unknown = await client.get(f"/providers/0x{'12' * 20}/standing")
            assert unknown.status_code == 404 and unknown.json()["error"] == "UnknownProvider"
            bad = await client.get("/providers/not-an-address/standing")
            assert bad.status_code == 400


def test_every_verified_kind_has_a_counter() -> None:
    from coordinator.verification.reputation import COUNTS

    assert set(COUNTS) == set(Verified)
    assert set(COUNTS.values()) <= set(ReputationRecord.__dataclass_fields__)


async def test_a_commitment_never_revealed_is_withheld_once_the_chain_ends_the_job(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, 2) as h:
        job_id = await h.create_job(2)
        await h.run(job_id, lambda j: j.state is S.COMMITTED)
        slots = await h.slots(job_id)
        shy, honest = h.provider(slots[1].address), h.provider(slots[0].address)
        shy.withhold = True  # answers no reveal request, and never reveals on chain
        job = await h.run(job_id, lambda j: j.state is S.FAILED, advance=60, steps=200)
        assert job.abort_tx is None  # committed seats: the chain decides, not an abort
        await h.step(job_id)
        assert await counts(h, shy.address) == (0, 0, 0, 0, 0)  # a seat may still reveal
        h.world.advance(job.settle_deadline - h.world.time + 1)
        h.chain(h.requester).reclaim(bytes.fromhex(job_id[2:]))  # type: ignore[arg-type]
        await h.watcher.poll_once()
        assert h.woken[-1] == job_id  # the watcher wakes the job: its driver counts
        assert (await h.job(job_id)).state is S.RECLAIMED
        await h.step(job_id)
        assert await counts(h, shy.address) == (0, 0, 0, 0, 1)
        withheld = await row(h, shy.address)
        assert withheld.beta == pytest.approx(PRIOR.prior_beta + PRIOR.withheld_weight, 1e-6)
        assert await counts(h, honest.address) == (0, 0, 0, 0, 0)  # revealed: neutral
        assert all(s.reputation_recorded for s in await h.slots(job_id))
