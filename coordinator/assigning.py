"""Choosing providers for a job and recording them on chain, idempotently.

The plan (slots in state ``planned`` plus the match's explanation) is persisted before the
``assign`` transaction is sent. Before sending, the chain is asked how many providers the
job already has: a plan that already landed (the receipt was lost, or the coordinator
restarted) is adopted instead of sent twice. The same path appends replacements,
tie-breakers and spot-checkers to an existing assignment (the contract allows up to
``redundancy + 1`` providers, appended in order).

Planning holds the chosen providers' job slots (:mod:`coordinator.capacity`) under one
lock across jobs, so concurrent jobs never plan onto the same last free slot. New jobs
that find no capacity wait in ``created``, in the order they were created: whenever a
slot frees up, the oldest waiting jobs are matched first (:meth:`Assigner.admit`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import trio

from contracts.errors import ContractError
from contracts.models import Assignment
from coordinator.book import ProviderBook
from coordinator.chain_io import AsyncChain
from coordinator.errors import NoCandidates
from coordinator.matcher import Match, Matcher
from coordinator.requirements import Requirements
from coordinator.states import JobState, ProviderState
from coordinator.store import AsyncStore, JobRecord, ProviderSlot
from protocol.ids import Address, JobId, Wei

log = logging.getLogger(__name__)

QUEUE_MARGIN_S = 30.0
"""Within this long of its assign deadline, a waiting job may queue at busy providers."""
MAX_QUEUE = 16


@dataclass
class Waiting:
    """A new job waiting for providers with free capacity."""

    job: JobRecord
    req: Requirements
    tried_at: tuple[int, int] = (-1, 0)  # (book version, queue) of its last failed match
    reason: str | None = None


class Assigner:
    def __init__(
        self,
        store: AsyncStore,
        chain: AsyncChain,
        book: ProviderBook,
        matcher: Matcher,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.chain = chain
        self.book = book
        self.matcher = matcher
        self.observe = observe
        self.wake: Callable[[str], None] | None = None
        self.chain_now: Callable[[], float] = time.time
        self._lock = trio.Lock()
        self._waiting: dict[str, Waiting] = {}
        self._planned: dict[str, list[ProviderSlot]] = {}  # planned while their task waited
        book.capacity.on_release = self.kick

    # ------------------------------------------------------------------ admission
    def waiting(self) -> list[str]:
        """Job ids waiting for capacity, oldest first."""
        return [w.job.job_id for w in self._order()]

    def unchanged(self, job_id: str) -> bool:
        """True when the job waits and the book has not changed since it last failed to match."""
        entry = self._waiting.get(job_id)
        return entry is not None and entry.tried_at == self._try_key(entry)

    def _try_key(self, entry: Waiting) -> tuple[int, int]:
        """What a new match attempt would differ in: the book, or the queue allowance.

        Close to its assign deadline a job may queue at busy providers: the chain only
        needs it assigned by then; it runs when a slot frees, before its commit deadline.
        """
        near = self.chain_now() > entry.job.assign_deadline - QUEUE_MARGIN_S
        return self.book.columns.version, MAX_QUEUE if near else 0

    def forget(self, job_id: str) -> None:
        self._waiting.pop(job_id, None)
        self._planned.pop(job_id, None)

    def kick(self) -> None:
        """Capacity freed up: wake the oldest waiting job, whose step matches in order."""
        order = self._order()
        if order and self.wake is not None:
            self.wake(order[0].job.job_id)

    def _order(self) -> list[Waiting]:
        return sorted(self._waiting.values(), key=lambda w: (w.job.created_at, w.job.job_id))

    async def admit(self, job: JobRecord, req: Requirements) -> list[ProviderSlot] | None:
        """Plan ``job`` if capacity allows once every older waiting job had its turn.

        Returns the planned slots, or None while the job waits (its ``failure_reason``
        says for what). Jobs planned on the way are woken to submit their plans.
        """
        async with self._lock:
            done = self._planned.pop(job.job_id, None)
            if done is not None:
                return done
            if job.job_id not in self._waiting:
                self._waiting[job.job_id] = Waiting(job, req)
            result: list[ProviderSlot] | None = None
            for entry in self._order():
                job_id = entry.job.job_id
                key = self._try_key(entry)
                if entry.tried_at == key:
                    continue
                if job_id != job.job_id:
                    current = await self.store.get_job(job_id)
                    if current.state is not JobState.CREATED:
                        self.forget(job_id)
                        continue
                try:
                    slots = await self._plan(entry.job, replace(entry.req, queue=key[1]), [])
                except NoCandidates as exc:
                    entry.tried_at = key
                    reason = f"waiting for providers: {exc}"
                    if reason != entry.reason:
                        entry.reason = reason
                        await self.store.update_job(job_id, failure_reason=reason[:1000])
                    continue
                del self._waiting[job_id]
                if job_id == job.job_id:
                    result = slots
                else:
                    self._planned[job_id] = slots
                    if self.wake is not None:
                        self.wake(job_id)
            return result

    # ------------------------------------------------------------------ planning

    def match(self, req: Requirements) -> Match:
        start = time.perf_counter()
        try:
            return self.matcher.match(req)
        finally:
            if self.observe is not None:
                self.observe(time.perf_counter() - start)

    async def plan(
        self, job: JobRecord, req: Requirements, existing: list[ProviderSlot]
    ) -> list[ProviderSlot]:
        """Match ``req.count`` more providers, hold their slots, persist them as planned."""
        async with self._lock:
            return await self._plan(job, req, existing)

    async def _plan(
        self, job: JobRecord, req: Requirements, existing: list[ProviderSlot]
    ) -> list[ProviderSlot]:
        match = self.match(req)
        start = len(existing)
        now = time.time()
        slots = [
            ProviderSlot(
                job_id=job.job_id,
                idx=start + i,
                address=c.address,
                peer_id=c.peer_id,
                price=c.price,
                state=ProviderState.PLANNED,
                updated_at=now,
                multiaddrs=c.multiaddrs,
                detail="exploration seat" if c.explored else None,
            )
            for i, c in enumerate(match.chosen)
        ]
        # Held before the first await: no other plan can take these slots meanwhile.
        self.book.capacity.hold(job.job_id, [s.address for s in slots])
        try:
            previous = await self.store.explanation(job.job_id) or []
            explained = [dict(c.to_json(), seat_from=start) for c in match.candidates]
            await self.store.put_slots(slots)
            await self.store.save_explanation(job.job_id, previous + explained)
        except BaseException:
            self.book.capacity.sync(job.job_id, existing)
            raise
        return slots

    async def submit(self, job: JobRecord, slots: list[ProviderSlot]) -> str | None:
        """Put every planned slot on chain (unless already there); returns the tx hash sent."""
        job_id = JobId(bytes.fromhex(job.job_id[2:]))
        _, assigned = await self.chain.job_status(job_id)
        ordered = sorted(slots, key=lambda s: s.idx)
        if assigned >= len(ordered):
            await self.adopt(job, ordered)
            return None
        assignment = [Assignment(Address(s.address), Wei(s.price)) for s in ordered]
        try:
            receipt = await self.chain.assign(job_id, assignment)
        except ContractError:
            # The chain may have moved (another attempt landed): adopt what it holds.
            _, assigned = await self.chain.job_status(job_id)
            if assigned >= len(ordered):
                await self.adopt(job, ordered)
                return None
            raise
        for s in ordered:
            if s.state is ProviderState.PLANNED:
                await self.store.update_slot(job.job_id, s.idx, state=ProviderState.ASSIGNED)
                gpus = int((job.requirements or {}).get("gpus", 0))
                if gpus > 0:
                    self.book.columns.add_inflight(s.address, gpus, time.time())
        return receipt.tx_hash

    async def adopt(self, job: JobRecord, slots: list[ProviderSlot]) -> None:
        """Make the stored slots agree with the chain's assignment (the chain wins)."""
        job_id = JobId(bytes.fromhex(job.job_id[2:]))
        onchain = await self.chain.get_assignment(job_id)
        by_idx = {s.idx: s for s in slots}
        fixed: list[ProviderSlot] = []
        for i, a in enumerate(onchain):
            slot = by_idx.get(i)
            if slot is not None and slot.address == a.provider:
                if slot.state is ProviderState.PLANNED:
                    fixed.append(replace(slot, state=ProviderState.ASSIGNED, price=int(a.price)))
                continue
            advert = self.book.find(a.provider)
            fixed.append(
                ProviderSlot(
                    job_id=job.job_id,
                    idx=i,
                    address=a.provider,
                    peer_id=advert.peer_id if advert else "",
                    price=int(a.price),
                    state=ProviderState.ASSIGNED if advert else ProviderState.FAILED,
                    updated_at=time.time(),
                    multiaddrs=tuple(advert.multiaddrs) if advert else (),
                    detail=None if advert else "assigned on chain but not in the book",
                )
            )
        if fixed:
            await self.store.put_slots(fixed)
        if len(slots) > len(onchain):
            await self.store.delete_planned_slots(job.job_id, len(onchain))
