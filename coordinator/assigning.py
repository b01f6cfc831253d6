"""Choosing providers for a job and recording them on chain, idempotently.

The plan (slots in state ``planned`` plus the match's explanation) is persisted before the
``assign`` transaction is sent. Before sending, the chain is asked how many providers the
job already has: a plan that already landed (the receipt was lost, or the coordinator
restarted) is adopted instead of sent twice. The same path appends replacements,
tie-breakers and spot-checkers to an existing assignment (the contract allows up to
``redundancy + 1`` providers, appended in order).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from contracts.errors import ContractError
from contracts.models import Assignment
from coordinator.book import ProviderBook
from coordinator.chain_io import AsyncChain
from coordinator.matcher import Match, Matcher
from coordinator.requirements import Requirements
from coordinator.states import ProviderState
from coordinator.store import AsyncStore, JobRecord, ProviderSlot
from protocol.ids import Address, JobId, Wei

log = logging.getLogger(__name__)


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
        """Match ``req.count`` more providers and persist them as planned slots."""
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
        previous = await self.store.explanation(job.job_id) or []
        explained = [dict(c.to_json(), seat_from=start) for c in match.candidates]
        await self.store.put_slots(slots)
        await self.store.save_explanation(job.job_id, previous + explained)
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
                gpus = max(1, (job.requirements or {}).get("gpus", 1))
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
