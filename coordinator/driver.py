"""Driving each job through its lifecycle, one step at a time, from the store and the chain.

:meth:`JobDriver.step` looks at a job's stored state (and the chain when it must) and does
the next thing: match, get consent and assign, deliver assignments, replace providers
that failed, wait for commitments, ask for reveals, decide, settle, or abort a job that
failed before anyone committed. Every step persists what it decided before the side effect
it causes, and every side effect checks the chain first, so a step can be repeated after a
crash or restart and does each thing exactly once.

Seats are added (:class:`coordinator.seating.Seating`) under the contract's rules: the
first ones until the assign deadline, replacements, a spot-checker and a tie-breaker while
``now <= spareDeadline`` and ``now <= revealOpen`` of the seats already there.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

import trio

from contracts.models import JobStatus
from coordinator.assigning import Assigner
from coordinator.book import ProviderBook
from coordinator.chain_io import AsyncChain
from coordinator.closing import Closer
from coordinator.config import DriverConfig
from coordinator.dispatcher import Dispatcher
from coordinator.errors import InvalidTransition
from coordinator.offers import job_key, target_of
from coordinator.reputation import ReputationBook
from coordinator.requirements import requirements_for
from coordinator.seating import Seating, every_provider_failed
from coordinator.settlement import Settler
from coordinator.signals import Signals
from coordinator.store import AsyncStore, JobRecord, ProviderSlot
from protocol import eip712
from protocol.errors import ContentError, MatchError, SpecError
from protocol.identity import Identity
from protocol.ipfs.store import ContentStore
from protocol.lifecycle import JobState
from protocol.messages import Reveal
from protocol.registry import MAX_SPEC_BYTES
from protocol.spec import JobSpec
from protocol.spec_io import parse_spec

log = logging.getLogger(__name__)

S = JobState
MAX_REASON_CHARS = 4000

__all__ = ["DriverConfig", "JobDriver", "every_provider_failed", "new_seed"]


class JobDriver:
    def __init__(
        self,
        *,
        identity: Identity,
        store: AsyncStore,
        chain: AsyncChain,
        content: ContentStore,
        book: ProviderBook,
        assigner: Assigner,
        dispatcher: Dispatcher,
        settler: Settler,
        reputation: ReputationBook,
        signals: Signals,
        domain: eip712.Eip712Domain,
        chain_now: Callable[[], float],
        config: DriverConfig | None = None,
    ) -> None:
        self.identity = identity
        self.store = store
        self.chain = chain
        self.content = content
        self.book = book
        self.assigner = assigner
        self.dispatcher = dispatcher
        self.signals = signals
        self.domain = domain
        self.chain_now = chain_now
        self.config = config or DriverConfig()
        self._specs: dict[str, JobSpec] = {}
        self.looked_at: set[str] = set()
        """Jobs looked at since this process started (the chain may be ahead of the store)."""
        self.seating = Seating(self)
        self.closer = Closer(self, settler, reputation)

    # ------------------------------------------------------------------ plumbing
    async def move(
        self,
        job: JobRecord,
        wanted: JobState,
        detail: dict[str, object] | None = None,
        **fields: object,
    ) -> JobRecord | None:
        """Transition, tolerating a job someone else (the chain watcher) already moved."""
        try:
            moved = await self.store.transition(
                job.job_id, wanted, detail or {}, expect=frozenset({job.state}), **fields
            )
        except InvalidTransition as exc:
            log.info("job %s: %s", job.job_id, exc)
            return None
        self.signals.fire(job.job_id)
        log.info("job %s: %s -> %s %s", job.job_id[:18], job.state, wanted, detail or "")
        return moved

    async def spec(self, job: JobRecord) -> JobSpec:
        cached = self._specs.get(job.job_id)
        if cached is None:
            data = await self.content.read_bytes(job.spec_cid, max_size=MAX_SPEC_BYTES)
            cached = self._specs[job.job_id] = parse_spec(data)
        return cached

    async def fail(self, job: JobRecord, reason: str, provider: str | None = None) -> None:
        """Give the job up; when nobody committed, abort it so the requester is refunded now."""
        moved = await self.move(
            job, S.FAILED, {"reason": reason}, failure_reason=reason, failure_provider=provider
        )
        if moved is not None:
            await self.closer.abort(moved)

    def now(self) -> int:
        return int(self.chain_now())

    # ---------------------------------------------------------------------- step
    async def step(self, job_id: str) -> bool:
        """Advance one job as far as it can go now; True once it needs nothing more."""
        job = await self.store.get_job(job_id)
        if job.state.terminal:
            if job.state is S.FAILED and self.now() <= job.settle_deadline:
                await self.closer.abort(job)  # a failure recorded before a crash or restart
            self.assigner.forget(job_id)
            self.book.capacity.release_job(job_id)
            self._specs.pop(job_id, None)
            return True
        handler = {
            S.CREATED: self._created,
            S.MATCHING: self._created,
            S.ASSIGNED: self.seating.assigned,
            S.RUNNING: self.seating.assigned,
            S.COMMITTED: self.closer.committed,
            S.REVEALING: self.closer.revealed,
            S.DISPUTED: self.seating.disputed,
        }[job.state]
        await handler(job)
        # Providers done with this job (committed, failed, replaced) free their job slot.
        self.book.capacity.sync(job_id, await self.store.slots(job_id))
        return False

    # ------------------------------------------------------------------- created
    async def _first_look(self, job: JobRecord) -> bool:
        """First look since this process started: the chain may be ahead of the store.
        True when the job moved on (nothing more to do in this step)."""
        self.looked_at.add(job.job_id)
        status, count = await self.chain.job_status(job_key(job))
        if status is JobStatus.CANCELLED:
            await self.move(job, S.CANCELLED, {"reason": "cancelled by the requester"})
        elif status is JobStatus.SETTLED:
            await self.move(job, S.SETTLED)
        elif status is JobStatus.RECLAIMED:
            await self.move(job, S.RECLAIMED)
        elif status is JobStatus.ABORTED:
            await self.move(job, S.FAILED, {"reason": "aborted on chain"})
        elif count > 0:
            slots = await self.store.slots(job.job_id)
            await self.assigner.adopt(job, slots, await self.chain.get_seats(job_key(job)))
            providers = [s.address for s in await self.store.slots(job.job_id) if s.state.on_chain]
            await self.move(job, S.ASSIGNED, {"providers": providers, "adopted": True})
        else:
            return False
        return True

    async def _created(self, job: JobRecord) -> None:
        waiting = job.job_id in self.assigner.waiting()
        if waiting and self.chain_now() > job.assign_deadline:
            self.assigner.forget(job.job_id)
            await self.fail(job, await self._nobody_reason(job))
            return
        if self.assigner.unchanged(job.job_id):
            return  # still waiting, and nothing in the book changed since the last try
        if not waiting and job.job_id not in self.looked_at and await self._first_look(job):
            return
        try:
            spec = await self.spec(job)
        except SpecError as exc:
            await self.fail(job, f"invalid spec: {exc}")
            return
        except ContentError as exc:
            log.warning("job %s: spec %s not available yet: %s", job.job_id, job.spec_cid, exc)
            if self.chain_now() > job.assign_deadline:
                await self.fail(job, f"spec unavailable: {exc}")
            return
        req = requirements_for(spec, count=job.redundancy, price_cap=job.price_cap, exact=job.exact)
        if job.requirements is None:
            job = await self.store.update_job(job.job_id, requirements=req.to_json())
        if self.chain_now() + self.config.tx_margin_s > job.assign_deadline:
            await self.fail(job, await self._nobody_reason(job))
            return
        if job.state is S.CREATED:
            job = await self.move(job, S.MATCHING, {"providers_wanted": job.redundancy}) or job
        slots = await self.store.slots(job.job_id)
        if not slots:
            if await self.store.declines(job.job_id):
                req = await self.seating.more(job, [], [], job.redundancy)
            planned = await self.assigner.admit(job, req)
            if planned is None:
                return  # waits in created until capacity frees up (or the deadline passes)
            slots = planned
        elif len(slots) < job.redundancy:  # seats given back by providers that declined
            more = await self.seating.more(job, slots, slots, job.redundancy - len(slots))
            try:
                await self.assigner.plan(job, more, slots)
            except MatchError as exc:
                await self.store.update_job(job.job_id, waiting=str(exc)[:1000])
                return
            slots = await self.store.slots(job.job_id)
        tx = await self.assigner.submit(job, slots)
        onchain = [s.address for s in await self.store.slots(job.job_id) if s.state.on_chain]
        if onchain:
            await self.move(job, S.ASSIGNED, {"tx": tx, "providers": onchain}, waiting=None)

    async def _nobody_reason(self, job: JobRecord) -> str:
        """Why no provider took the job: who declined and why, else what the matcher said."""
        declines = await self.store.declines(job.job_id)
        if declines:
            said = "; ".join(f"{d.address}: {d.reason}" for d in declines[-8:])
            reason = f"no providers accepted before the assign deadline: {said}"
        else:
            why = job.waiting or "no capacity"
            reason = f"no providers matched before the assign deadline: {why}"
        return reason[:MAX_REASON_CHARS]

    # ------------------------------------------------------------------- reveals
    async def accept_reveal(self, job: JobRecord, slot: ProviderSlot, reveal: Reveal) -> bool:
        """Store a reveal that opens the seat's commitment and carries a valid signature."""
        return await self.closer.accept_reveal(job, slot, reveal)

    async def cancel_at(self, slot: ProviderSlot, job: JobRecord, reason: str) -> None:
        with trio.move_on_after(self.config.request_timeout_s):
            await self.dispatcher.cancel(target_of(slot), job_key(job), reason)


def new_seed() -> int:
    return secrets.randbelow(2**63)
