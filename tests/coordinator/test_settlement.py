"""The settlement batcher reads each job's fate from the receipt: settled (with what the
market paid) or skipped by ``settleBatch`` with the error ``settle`` would have raised."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from eth_utils import keccak

from contracts.models import ChainEvent, JobStatus, Receipt, Settlement
from coordinator.chain.settlement import Settler
from protocol.ids import JobId

SKIPPED = JobId(b"\x01" * 32)
SETTLED = JobId(b"\x02" * 32)


class BatchChain:
    """Settles one job of a batch and skips the other, as ``settleBatch`` does."""

    def __init__(self) -> None:
        self.batches: list[list[Settlement]] = []

    async def job_status(self, job_id: bytes) -> tuple[JobStatus, int]:
        return JobStatus.ASSIGNED, 2

    async def settle_batch(self, settlements: list[Settlement]) -> Receipt:
        self.batches.append(settlements)
        no_majority = keccak(text="NoMajority(bytes32)")[:4]
        events = (
            ChainEvent(
                "SettlementSkipped",
                "market",
                {"jobId": SKIPPED, "reason": no_majority},
                9,
                "0xt",
                0,
            ),
            ChainEvent(
                "JobSettled",
                "market",
                {
                    "jobId": SETTLED,
                    "winners": 3,
                    "slashMask": 0,
                    "paidAndBilled": [1, 1],
                    "refund": 5,
                },
                9,
                "0xt",
                1,
            ),
        )
        return Receipt("0xt", 9, 100_000, events)


@pytest.mark.timeout(30)
async def test_a_skipped_settlement_returns_the_reason_and_the_other_settles() -> None:
    chain = BatchChain()
    settler = Settler(chain, window_s=0.05)  # type: ignore[arg-type]
    results = {}

    async def settle(job_id: JobId) -> None:
        results[job_id] = await settler.settle(Settlement(job_id=job_id, seats=(), entries=()))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(settler.run)
            async with trio.open_nursery() as waiters:
                waiters.start_soon(settle, SKIPPED)
                waiters.start_soon(settle, SETTLED)
            nursery.cancel_scope.cancel()
    assert len(chain.batches) == 1 and len(chain.batches[0]) == 2
    skipped, settled = results[SKIPPED], results[SETTLED]
    assert not skipped.ok and skipped.error == "settlement skipped by the market: NoMajority"
    assert settled.ok and settled.tx_hash == "0xt"
    assert settled.settled is not None and settled.settled.args["refund"] == 5


class GatedChain:
    """Records every settle call; the first transaction is mined only when let go."""

    def __init__(self) -> None:
        self.sent: list[list[JobId]] = []
        self.first_sent = trio.Event()
        self.mine = trio.Event()

    async def job_status(self, job_id: bytes) -> tuple[JobStatus, int]:
        return JobStatus.ASSIGNED, 2

    async def settle(self, settlement: Settlement) -> Receipt:
        return await self.settle_batch([settlement])

    async def settle_batch(self, settlements: list[Settlement]) -> Receipt:
        self.sent.append([s.job_id for s in settlements])
        self.first_sent.set()
        await self.mine.wait()
        return Receipt("0xt", 9, 100_000, ())


async def test_with_no_window_one_settles_at_once_and_those_arriving_meanwhile_share_a_batch(
    mock_clock: trio.testing.MockClock,
) -> None:
    """The clock stands still here: a settlement that waited for any window would never
    be sent."""
    chain = GatedChain()
    settler = Settler(chain)  # type: ignore[arg-type]
    ids = [JobId(bytes([i]) * 32) for i in (7, 8, 9)]

    async def settle(job_id: JobId) -> None:
        await settler.settle(Settlement(job_id=job_id, seats=(), entries=()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(settler.run)
        nursery.start_soon(settle, ids[0])
        await trio.testing.wait_all_tasks_blocked()
        assert chain.sent == [[ids[0]]]  # sent alone, at once
        nursery.start_soon(settle, ids[1])
        nursery.start_soon(settle, ids[2])
        await trio.testing.wait_all_tasks_blocked()
        assert chain.sent == [[ids[0]]]  # the others wait while it is being mined
        chain.mine.set()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert [sorted(batch) for batch in chain.sent] == [[ids[0]], [ids[1], ids[2]]]
