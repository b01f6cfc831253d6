"""Which providers' job slots this coordinator holds, job by job.

A job holds a slot at each provider from the moment it is planned there (before the
``assign`` transaction) until that provider is done with it: committed, failed, replaced,
or the job ended. The matcher counts the held slots against the capacity the provider's
adverts report (:meth:`coordinator.matching.columns.ProviderColumns.free_jobs`), so two jobs
planned one after the other never both pick the last free slot. Holdings are rebuilt from
the store after a restart (:meth:`CapacityLedger.sync` for every open job).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from coordinator.matching.columns import ProviderColumns
from coordinator.store import ProviderSlot
from protocol.lifecycle import SeatState

QUEUE_DEPTH = 4
"""The most jobs a busy provider is asked to queue beyond the ones its job slots run (the
providers' default ``PROVIDER_MAX_QUEUED_JOBS``; fewer where its advert says fewer)."""

HOLDING = frozenset({SeatState.OFFERED, SeatState.ACCEPTED, SeatState.ASSIGNED, SeatState.RUNNING})


def holders(slots: Iterable[ProviderSlot]) -> set[str]:
    """Providers whose slot a job still occupies (chosen, assigned or running, not committed)."""
    return {s.address for s in slots if s.state in HOLDING and not s.committed}


class CapacityLedger:
    def __init__(self, columns: ProviderColumns, clock: Callable[[], float]) -> None:
        self.columns = columns
        self.clock = clock
        self._held: dict[str, set[str]] = {}  # job id -> provider addresses
        self._count: dict[str, int] = {}  # provider address -> jobs held there
        self._running: dict[str, set[str]] = {}  # job id -> providers that acknowledged it
        self.on_release: Callable[[], None] | None = None

    def held(self, address: str) -> int:
        return self._count.get(address, 0)

    def jobs_at(self, address: str) -> list[str]:
        return [job for job, addresses in self._held.items() if address in addresses]

    def hold(self, job_id: str, addresses: Iterable[str]) -> None:
        self._set(job_id, self._held.get(job_id, set()) | set(addresses))

    def running_at(self, address: str) -> int:
        """Jobs of this coordinator the provider acknowledged and has not finished."""
        return sum(1 for addresses in self._running.values() if address in addresses)

    def sync(self, job_id: str, slots: Iterable[ProviderSlot]) -> None:
        """Make the job's holdings match its stored slots."""
        slots = list(slots)
        running: set[str] = {
            s.address for s in slots if s.state is SeatState.RUNNING and not s.committed
        }
        if running:
            self._running[job_id] = running
        else:
            self._running.pop(job_id, None)
        self._set(job_id, holders(slots))

    def release_job(self, job_id: str) -> None:
        self._running.pop(job_id, None)
        self._set(job_id, set())

    def refresh(self, address: str) -> None:
        """Copy the count into the columns (a provider that just (re)joined the book)."""
        self.columns.set_reserved(address, self.held(address), self.clock())

    def _set(self, job_id: str, addresses: set[str]) -> None:
        before = self._held.get(job_id, set())
        if addresses == before:
            return
        if addresses:
            self._held[job_id] = addresses
        else:
            self._held.pop(job_id, None)
        now = self.clock()
        for address in before ^ addresses:
            count = self._count.get(address, 0) + (1 if address in addresses else -1)
            if count > 0:
                self._count[address] = count
            else:
                self._count.pop(address, None)
            self.columns.set_reserved(address, max(count, 0), now)
        if before - addresses and self.on_release is not None:
            self.on_release()
