"""Where a provider's reputation starts: trusted coordinators' settlements read from the
chain, in bounded ranges; never an untrusted coordinator's, never the registry's counters."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from contracts.models import ChainEvent
from coordinator.chain.chain_io import AsyncChain
from coordinator.chain.watcher import ChainWatcher
from coordinator.service import Coordinator
from coordinator.signals import Signals
from coordinator.store import AsyncStore, ReputationRecord, Store
from coordinator.verification import reputation_seed
from coordinator.verification.reputation import ReputationBook
from coordinator.verification.reputation_seed import TrustedHistory
from devnet.harness import Harness, harness, identity
from proofs.reputation import ReputationParams
from protocol.lifecycle import JobState

PRIOR = ReputationParams()
RATES = [10**6, 2 * 10**6, 3 * 10**6]
A, B, OWN = (identity(90 + i, "seed").address for i in range(3))
P1, P2, P3 = (identity(95 + i, "seed").address for i in range(3))


def event(name: str, job: int, block: int = 1, **args: Any) -> ChainEvent:
    return ChainEvent(name, "market", {"jobId": bytes([job]) * 32, **args}, block, "0x", 0)


def a_job(job: int, coordinator: str) -> list[ChainEvent]:
    """P1 and P3 win seats 0 and 2, P2 loses seat 1 and is slashed."""
    return [
        event("JobCreated", job, coordinator=coordinator),
        event("ProviderAssigned", job, provider=P1, seat=0),
        event("ProviderAssigned", job, provider=P2, seat=1),
        event("ProviderAssigned", job, provider=P3, seat=2),
        event("ProviderSlashed", job, provider=P2, amount=5),
        event("JobSettled", job, winners=0b101, slashMask=0b10),
    ]


def test_a_lone_winner_was_not_verified_by_anyone() -> None:
    history = TrustedHistory(OWN, [A])
    for e in [
        event("JobCreated", 9, coordinator=A),
        event("ProviderAssigned", 9, provider=P1, seat=0),
        event("JobSettled", 9, winners=0b1, slashMask=0),
    ]:
        history.observe(e)
    assert history.counts(P1) == (0, 0)


def test_only_trusted_coordinators_settlements_count() -> None:
    history = TrustedHistory(OWN, [A])
    for e in a_job(1, A) + a_job(2, B) + a_job(3, A):
        history.observe(e)
    assert history.counts(P1) == (2, 0)
    assert history.counts(P2) == (0, 2)
    assert history.counts(B) == (0, 0)
    untrusting = TrustedHistory(OWN)
    for e in a_job(1, A):
        untrusting.observe(e)
    assert untrusting.counts(P1) == untrusting.counts(P2) == (0, 0)


def test_own_jobs_count_only_while_rebuilding_an_empty_store() -> None:
    history = TrustedHistory(OWN)
    for e in a_job(1, OWN):
        history.observe(e)
    assert history.counts(P1) == (0, 0)  # counted from the store's seat rows instead
    rebuilding = TrustedHistory(OWN, count_own=True)
    for e in a_job(2, OWN) + a_job(3, OWN)[:3]:  # job 3 still open when the store caught up
        rebuilding.observe(e)
    rebuilding.stop_counting_own()
    for e in a_job(3, OWN)[3:]:
        rebuilding.observe(e)
    assert rebuilding.counts(P1) == (1, 0) and rebuilding.counts(P2) == (0, 1)


async def settle_with_a_cheat(h: Harness) -> str:
    h.providers[0].result = b"wrong"
    job_id = await h.create_job(3)
    await h.run(job_id, lambda j: j.state is JobState.SETTLED)
    return job_id


class Recording:
    """An AsyncChain that remembers which block ranges were read."""

    def __init__(self, chain: AsyncChain) -> None:
        self.chain = chain
        self.ranges: list[tuple[int, int]] = []

    async def get_events(self, start: int, end: int) -> list[ChainEvent]:
        self.ranges.append((start, end))
        return await self.chain.get_events(start, end)


async def test_replay_reads_the_chain_in_bounded_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        await settle_with_a_cheat(h)
        head = h.chain(h.coordinator).block_number()
        cheat, honest = h.providers[0].address, h.providers[1].address
        monkeypatch.setattr(reputation_seed, "MAX_RANGE", 3)
        chain = Recording(AsyncChain(h.chain(h.coordinator)))
        trusting = TrustedHistory(OWN, [h.coordinator.address])
        assert await trusting.replay(chain, 0, head) > 0  # type: ignore[arg-type]
        assert all(end - start < 3 for start, end in chain.ranges)
        assert chain.ranges[0][0] == 0 and chain.ranges[-1][1] == head
        assert all(b[0] == a[1] + 1 for a, b in zip(chain.ranges, chain.ranges[1:], strict=False))
        assert trusting.counts(cheat) == (0, 1) and trusting.counts(honest) == (1, 0)
        untrusting = TrustedHistory(OWN)
        await untrusting.replay(chain, 0, head)  # type: ignore[arg-type]
        assert untrusting.counts(cheat) == untrusting.counts(honest) == (0, 0)


async def test_a_provider_first_seen_starts_from_trusted_settlements(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        await settle_with_a_cheat(h)
        cheat, honest = h.providers[0].address, h.providers[1].address
        other = AsyncStore(Store(f"sqlite:///{tmp_path / 'other.sqlite'}"))
        try:
            for trusted, expect in (([], (0, 0)), ([h.coordinator.address], (1, 0))):
                history = TrustedHistory(OWN, trusted)
                head = h.chain(h.coordinator).block_number()
                await history.replay(AsyncChain(h.chain(h.coordinator)), 0, head)
                book = ReputationBook(time.time)
                book.history = history
                seeded = book.seed(honest)
                assert (seeded.successes, seeded.slashes) == expect
                assert seeded.alpha == pytest.approx(PRIOR.prior_alpha + expect[0])
            await book.ensure(other, h.book, cheat)
            stored = await other.reputation(cheat)
            assert stored is not None and stored.slashes == 1
            assert stored.beta == pytest.approx(PRIOR.prior_beta + PRIOR.slash_weight)
            # This coordinator's own row is the primary source: never re-seeded.
            mine = ReputationRecord(honest, 7.0, 2.0, time.time(), successes=6)
            await other.seed_reputation(mine)
            fresh = ReputationBook(time.time)
            fresh.history = history
            fresh.load(await other.reputation_records())
            await fresh.ensure(other, h.book, honest)
            assert await other.reputation(honest) == mine
            unaware = ReputationBook(time.time)  # a row it has not loaded (another process)
            unaware.history = history
            await unaware.ensure(other, h.book, honest)
            assert await other.reputation(honest) == mine
        finally:
            other.sync.close()


def coordinator_over(h: Harness, store: AsyncStore, watcher: ChainWatcher) -> Coordinator:
    """A Coordinator with just what seeding needs (no network, no service start)."""
    c = Coordinator.__new__(Coordinator)
    c.settings = SimpleNamespace(start_block=0, trusted_coordinators=())  # type: ignore[assignment]
    c.identity = h.coordinator
    c.store, c.watcher, c.book = store, watcher, h.book
    c.chain = AsyncChain(h.chain(h.coordinator))
    c.reputation = ReputationBook(time.time)
    c.admission = SimpleNamespace(set_stake=lambda *a: None)  # type: ignore[assignment]
    return c


@pytest.mark.parametrize(
    ("restarting", "trusts_it", "successes"),
    [
        ("itself", False, 0),  # its own settlements count from its seat rows, not events
        ("another", False, 0),  # an untrusted coordinator's settlements count for nothing
        ("another", True, 1),
    ],
)
async def test_a_restart_seeds_from_trusted_settlements_not_the_registry(
    tmp_path: Path, restarting: str, trusts_it: bool, successes: int
) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        await settle_with_a_cheat(h)
        honest = h.providers[1].address
        assert h.chain(h.coordinator).provider_info(honest).completed == 1
        store = AsyncStore(Store(f"sqlite:///{tmp_path / 'restart.sqlite'}"))
        try:
            # The store of a coordinator restarting after the job settled (its cursor past it).
            cursor = await h.store.cursor("chain")
            assert cursor is not None
            await store.set_cursor("chain", cursor)
            c = coordinator_over(h, store, h.watcher)
            if restarting == "another":
                c.identity = identity(3)
            if trusts_it:
                c.settings = SimpleNamespace(  # type: ignore[assignment]
                    start_block=0, trusted_coordinators=(h.coordinator.address,)
                )
            await c._trusted_history()
            await c._refresh_provider(honest)  # the registry says: completed 1
            stored = await store.reputation(honest)
            assert stored is not None and stored.successes == successes
            assert stored.alpha == pytest.approx(PRIOR.prior_alpha + successes)
        finally:
            store.sync.close()


async def test_an_empty_store_rebuilds_from_the_coordinators_own_settlements(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        await settle_with_a_cheat(h)
        cheat, honest = h.providers[0].address, h.providers[1].address
        empty = AsyncStore(Store(f"sqlite:///{tmp_path / 'empty.sqlite'}"))
        try:
            watcher = ChainWatcher(
                AsyncChain(h.chain(h.coordinator)), empty, Signals(), lambda _: None
            )
            c = coordinator_over(h, empty, watcher)
            history = await c._trusted_history()
            assert history.count_own
            await watcher.poll_once()
            history.stop_counting_own()
            for address in (cheat, honest):
                await c._refresh_provider(address)
            honest_record = await empty.reputation(honest)
            cheat_record = await empty.reputation(cheat)
            assert honest_record is not None and honest_record.successes == 1
            assert cheat_record is not None and cheat_record.slashes == 1
            # the job is in the store again, ended, without seats: nothing counted twice
            assert await empty.unrecorded_jobs() == []
        finally:
            empty.sync.close()
