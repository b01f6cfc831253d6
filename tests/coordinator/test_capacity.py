"""Job slots: planning holds a provider's capacity, busy providers wait, releases reopen it."""

from __future__ import annotations

import dataclasses

import pytest

from coordinator.errors import NoCandidates
from coordinator.matching.book import ProviderBook
from coordinator.matching.capacity import QUEUE_DEPTH
from coordinator.matching.columns import AdvertRow
from coordinator.matching.matcher import Matcher
from coordinator.matching.requirements import Requirements
from coordinator.store import ProviderSlot
from protocol.ids import Address, Wei
from protocol.lifecycle import SeatState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def offer(i: int, now: float, utilization: float = 0.0, max_queued: int = 0) -> AdvertRow:
    return AdvertRow(
        address=f"0x{i:040x}",
        peer_id=f"peer{i}",
        multiaddrs=(f"/ip4/127.0.0.1/tcp/{4000 + i}",),
        gpu_count=0,
        free_gpus=0,
        gpu_memory_bytes=0,
        tflops={"fp32": 1.0},
        rate_per_gpu_hour=1_000_000 + i,
        rate_per_cpu_hour=1_000_000 + i,
        runtimes=("torch",),
        fingerprint="cpu",
        utilization=utilization,
        seen_at=now,
        max_queued=max_queued,
    )


def book_of(n: int, clock: Clock, max_queued: int = 0) -> tuple[ProviderBook, Matcher]:
    book = ProviderBook(clock)
    for i in range(n):
        book.columns.upsert(offer(i, clock.now, max_queued=max_queued))
        book.columns.set_stake(f"0x{i:040x}", 10**12, 0)
    return book, Matcher(book.columns, exploration_share=0.0)


REQ = Requirements(count=2, gpus=0, runtime="torch", duration_s=600, price_cap=10**9, exact=True)


def slot(job: str, address: str, state: SeatState, commit: str | None = None) -> ProviderSlot:
    return ProviderSlot(
        job_id=job,
        idx=0,
        address=Address(address),
        peer_id="p",
        price=Wei(1),
        state=state,
        updated_at=0.0,
        commit_hash=commit,
    )


def test_held_slots_are_not_planned_twice_and_free_up_on_commit() -> None:
    clock = Clock()
    book, matcher = book_of(3, clock)
    first = [c.address for c in matcher.match(REQ).chosen]
    book.capacity.hold("job-a", first)
    with pytest.raises(NoCandidates) as refused:
        matcher.match(REQ)
    assert "busy" in str(refused.value)
    released: list[int] = []
    book.capacity.on_release = lambda: released.append(1)
    book.capacity.sync(
        "job-a",
        [
            slot("job-a", first[0], SeatState.COMMITTED, "0x01"),
            slot("job-a", first[1], SeatState.RUNNING),
        ],
    )
    assert released and book.capacity.held(first[0]) == 0 and book.capacity.held(first[1]) == 1
    second = {c.address for c in matcher.match(REQ).chosen}
    assert first[1] not in second and first[0] in second


def test_a_stale_advert_does_not_hide_a_released_slot_but_a_fresh_one_counts() -> None:
    clock = Clock()
    book, _ = book_of(1, clock)
    address = "0x" + "0" * 40
    book.capacity.hold("job-a", [address])
    clock.now += 5
    book.columns.upsert(offer(0, clock.now, utilization=1.0))  # running the held job
    assert book.columns.free_jobs()[0] == 0
    book.capacity.release_job("job-a")
    assert book.columns.free_jobs()[0] == 1  # the advert predates the release
    clock.now += 5
    book.columns.upsert(offer(0, clock.now, utilization=1.0))  # now someone else's job
    assert book.columns.free_jobs()[0] == 0


def test_capacity_is_learned_from_utilization_and_busy_marks_full_until_next_advert() -> None:
    clock = Clock()
    book, _ = book_of(1, clock)
    address = "0x" + "0" * 40
    book.capacity.hold("job-a", [address])
    clock.now += 5
    book.columns.upsert(offer(0, clock.now, utilization=0.25))  # 1 of 4 slots in use
    assert book.columns.job_capacity[0] == 4
    assert book.columns.free_jobs()[0] == 3
    book.columns.mark_full(address, clock.now)
    assert book.columns.free_jobs()[0] == 0
    clock.now += 2
    book.columns.upsert(offer(0, clock.now, utilization=0.25))
    assert book.columns.free_jobs()[0] == 3


def test_a_job_may_queue_at_busy_providers_that_announce_a_queue() -> None:
    clock = Clock()
    book, matcher = book_of(2, clock, max_queued=1)
    book.capacity.hold("job-a", [c.address for c in matcher.match(REQ).chosen])
    with pytest.raises(NoCandidates):
        matcher.match(REQ)
    queued = matcher.match(dataclasses.replace(REQ, queue=1))
    assert len(queued.chosen) == 2


def test_a_full_provider_holding_queued_jobs_does_not_look_bigger() -> None:
    """Jobs queued behind a provider's one slot are held here while it reports itself full:
    that is no evidence of more slots."""
    clock = Clock()
    book, _ = book_of(1, clock)
    address = "0x" + "0" * 40
    for job in ("job-a", "job-b", "job-c"):
        book.capacity.hold(job, [address])
    clock.now += 5
    book.columns.upsert(offer(0, clock.now, utilization=1.0))  # one runs, two are queued
    assert book.columns.job_capacity[0] == 1
    assert book.columns.free_jobs()[0] == -2


def test_a_provider_announcing_no_queue_gets_no_queued_job() -> None:
    clock = Clock()
    book, matcher = book_of(2, clock)
    book.capacity.hold("job-a", [c.address for c in matcher.match(REQ).chosen])
    with pytest.raises(NoCandidates):
        matcher.match(dataclasses.replace(REQ, queue=QUEUE_DEPTH))


def test_a_waiting_job_queues_at_busy_providers_up_to_the_queue_depth_only() -> None:
    clock = Clock()
    book, matcher = book_of(2, clock, max_queued=64)
    queued = dataclasses.replace(REQ, queue=QUEUE_DEPTH)
    for i in range(1 + QUEUE_DEPTH):  # one job in the slot, QUEUE_DEPTH behind it
        book.capacity.hold(f"job-{i}", [c.address for c in matcher.match(queued).chosen])
    with pytest.raises(NoCandidates):
        matcher.match(queued)


def test_a_provider_that_refused_as_busy_gets_no_queued_job_until_it_advertises() -> None:
    clock = Clock()
    book, matcher = book_of(2, clock, max_queued=QUEUE_DEPTH)
    book.capacity.hold("job-a", [c.address for c in matcher.match(REQ).chosen])
    queued = dataclasses.replace(REQ, queue=QUEUE_DEPTH)
    book.columns.mark_full("0x" + "0" * 40, clock.now)
    with pytest.raises(NoCandidates):
        matcher.match(queued)
    clock.now += 5
    book.columns.upsert(offer(0, clock.now, utilization=1.0, max_queued=QUEUE_DEPTH))
    assert len(matcher.match(queued).chosen) == 2
