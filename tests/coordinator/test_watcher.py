"""The chain watcher records what only the chain decides, and what seats did on chain."""

from __future__ import annotations

import time
from pathlib import Path

from contracts.models import Settlement, SignedEntry
from coordinator.chain.watcher import ChainWatcher
from devnet.harness import harness
from protocol.ids import JobId
from protocol.lifecycle import JobState, SeatState


async def test_an_abort_sent_elsewhere_is_recorded_with_its_refund(tmp_path: Path) -> None:
    async with harness(tmp_path, 2) as h:
        job_id = await h.create_job(2)
        key = JobId(bytes.fromhex(job_id[2:]))
        receipt = h.chain(h.coordinator).abort(key)  # e.g. by a previous run of this process
        await h.watcher.poll_once()
        job = await h.job(job_id)
        assert job.state is JobState.FAILED and job.abort_tx == receipt.tx_hash
        assert job.refund == h.chain(h.requester).get_job(key).escrow
        assert job.failure_reason == "aborted by the coordinator"


async def test_a_skipped_settlement_wakes_the_job(tmp_path: Path) -> None:
    async with harness(tmp_path, 2) as h:
        job_id = await h.create_job(2)
        await h.run(job_id, lambda j: j.state is JobState.COMMITTED)
        key = JobId(bytes.fromhex(job_id[2:]))
        seats = tuple(h.chain(h.coordinator).get_seats(key))
        nothing = Settlement(key, seats, tuple(SignedEntry.none() for _ in seats))
        h.woken.clear()
        receipt = h.chain(h.coordinator).settle_batch([nothing])
        assert receipt.named("SettlementSkipped")
        await h.watcher.poll_once()
        assert h.woken == [job_id]
        assert (await h.job(job_id)).state is JobState.COMMITTED


async def test_a_commitment_made_on_chain_marks_the_seat_committed(tmp_path: Path) -> None:
    async with harness(tmp_path, 2, silent=True) as h:  # they never answer the Assignment
        job_id = await h.create_job(2)
        await h.run(job_id, lambda j: j.state is JobState.ASSIGNED)
        slot = (await h.slots(job_id))[0]
        provider = h.provider(slot.address)
        key = JobId(bytes.fromhex(job_id[2:]))
        commitment = provider.commitment(key)
        h.chain(provider.identity).commit_on_chain(key, 0, commitment.commit_hash)
        await h.watcher.poll_once()
        slot = (await h.slots(job_id))[0]
        assert slot.state is SeatState.COMMITTED
        assert slot.onchain_commit == "0x" + commitment.commit_hash.hex()
        assert slot.commit_hash is None  # nothing signed reached us off chain


def test_chain_time_follows_the_chains_clock_not_the_hosts() -> None:
    watcher = ChainWatcher(None, None, None, lambda _: None)  # type: ignore[arg-type]
    wall = time.time()
    watcher.observe_block(10, wall - 25.0, wall)  # a devnet whose clock lags by 25 s
    assert abs(watcher.now() - (time.time() - 25.0)) < 1.0
    watcher.observe_block(10, wall - 25.0, wall + 100.0)  # no new block: the clock runs on
    assert abs(watcher.now() - (time.time() - 25.0)) < 1.0
    watcher.observe_block(11, wall + 500.0, wall)  # a fresh block after a time jump
    assert watcher.now() >= wall + 500.0
