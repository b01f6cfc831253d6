"""One background task per open job, woken by signals and by a slow poll.

A task steps its job until the job needs nothing more; errors are logged with the job id
and retried with backoff, never allowed to take the service down. A step may run work in
nurseries, so its errors can arrive grouped: expected ones (``GpuMarketError``) are logged
as one warning line wherever they sit in the group, anything else as a crash.
"""

from __future__ import annotations

import logging

import trio

from coordinator.lifecycle.driver import JobDriver
from coordinator.signals import Signals
from protocol.errors import GpuMarketError, leaves

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0


class JobRunner:
    def __init__(
        self, driver: JobDriver, signals: Signals, nursery: trio.Nursery, poll_s: float = 1.0
    ) -> None:
        self.driver = driver
        self.signals = signals
        self.nursery = nursery
        self.poll_s = poll_s
        self.running: set[str] = set()

    def wake(self, job_id: str) -> None:
        if job_id in self.running:
            self.signals.fire(job_id)
            return
        self.running.add(job_id)
        self.nursery.start_soon(self._run, job_id, name=f"job {job_id[:18]}")

    async def _run(self, job_id: str) -> None:
        backoff = 0.2
        try:
            while True:
                seen = self.signals.generation(job_id)
                failed = False
                try:
                    if await self.driver.step(job_id):
                        return
                    backoff = 0.2
                except* GpuMarketError as group:
                    failed = True
                    why = "; ".join(str(e) for e in leaves(group))
                    log.warning("job %s: step failed: %s", job_id[:18], why)
                except* Exception:
                    failed = True
                    log.exception("job %s: step crashed", job_id[:18])
                if failed:
                    await trio.sleep(backoff)
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
                await self.signals.wait(job_id, self.poll_s, since=seen)
        finally:
            self.running.discard(job_id)
