"""More jobs than job slots, runs longer than the assign window: no job lost.

Three providers each run one job at a time and queue ``QUEUE_DEPTH`` more, as the real
provider does (``PROVIDER_MAX_QUEUED_JOBS``); eight redundancy-2 jobs arrive at once, each
with a 300 s assign window, and every run takes 60 s of chain time. Matching only free job
slots seats one job per run (two providers busy, the third idle) and leaves the last jobs
past their assign deadline; queueing them with providers at once seats every job in time,
each with its whole commit window to run.
"""

from __future__ import annotations

from pathlib import Path

from coordinator.matching.capacity import QUEUE_DEPTH
from devnet.harness import harness
from protocol.lifecycle import JobState, SeatState

S = JobState
JOBS = 8
RUN_S = 60
ASSIGN_WINDOW_S = 300


async def test_jobs_beyond_every_slot_queue_with_providers_and_all_settle(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, 3, max_jobs=1, max_queued=QUEUE_DEPTH, hold=True) as h:
        start = h.world.time
        job_ids = [
            await h.create_job(2, assign_deadline=start + ASSIGN_WINDOW_S) for _ in range(JOBS)
        ]
        for _ in range(40):
            for job_id in job_ids:
                await h.step(job_id)
            if all(j.state.terminal for j in [await h.job(j) for j in job_ids]):
                break
            for i, p in enumerate(h.providers):  # the providers advertise, and one run ends
                h.book.accept(p.advert((f"/ip4/127.0.0.1/tcp/{4000 + i}",)))
                p.finish()
            h.world.advance(RUN_S)
        jobs = [await h.job(j) for j in job_ids]
        assert [j.state for j in jobs] == [S.SETTLED] * JOBS, [j.failure_reason for j in jobs]
        for job_id in job_ids:
            slots = await h.slots(job_id)
            assert [s.state for s in slots] == [SeatState.REVEALED] * 2
        # Queued from the start: more jobs were assigned than there are job slots.
        assert max(len(p.running) for p in h.providers) == 0
        assert sum(len(p.assignments) for p in h.providers) == 2 * JOBS
        assert not any(p.busy_refusals for p in h.providers)
