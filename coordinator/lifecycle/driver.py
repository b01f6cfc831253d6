"""Driving each job through its lifecycle, one step at a time, from the store and the chain.

:meth:`JobDriver.step` looks at a job's stored state (and the chain when it must) and does
the next thing: match, get consent and assign, deliver assignments, replace providers
that failed, wait for commitments, ask for reveals, decide, settle, or abort a job that
failed before anyone committed. Every step persists what it decided before the side effect
it causes, and every side effect checks the chain first, so a step can be repeated after a
crash or restart and does each thing exactly once.

Each phase has its module: :mod:`coordinator.lifecycle.opening` (created, matching: first look,
match, offer, assign), :mod:`coordinator.lifecycle.seating` (assigned, running, disputed: deliver,
notice failures, replace, spot-check, tie-break) and :mod:`coordinator.lifecycle.closing`
(committed, revealing: reveals, the verdict, settlement, abort). Seats are added under the
contract's rules: the first ones until the assign deadline, replacements, a spot-checker and
a tie-breaker while ``now <= spareDeadline`` and ``now <= revealOpen`` of the seats already
there.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

import trio

from coordinator.chain.chain_io import AsyncChain
from coordinator.chain.settlement import Settler
from coordinator.errors import InvalidTransition
from coordinator.history import HistoryRecorder
from coordinator.lifecycle.assigning import Assigner
from coordinator.lifecycle.closing import Closer
from coordinator.lifecycle.config import DriverConfig
from coordinator.lifecycle.offers import job_key, target_of
from coordinator.lifecycle.opening import Matching
from coordinator.lifecycle.seating import Seating, every_provider_failed
from coordinator.matching.book import ProviderBook
from coordinator.signals import Signals
from coordinator.store import AsyncStore, JobRecord, ProviderSlot
from coordinator.verification.reputation import ReputationBook
from coordinator.wire.dispatcher import Dispatcher
from protocol import eip712
from protocol.errors import GpuMarketError
from protocol.identity import Identity
from protocol.ipfs.retention import PinRetention
from protocol.ipfs.store import ContentStore
from protocol.lifecycle import JobState
from protocol.messages import Reveal
from protocol.registry import MAX_SPEC_BYTES
from protocol.spec import JobSpec
from protocol.spec_io import parse_spec

log = logging.getLogger(__name__)

S = JobState
MAX_REASON_CHARS = 4000
KEPT = frozenset({S.SETTLED, S.FINALIZED})
"""Ended states whose result this coordinator's node keeps pinned for a while."""

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
        self._input_sizes: dict[str, int] = {}
        self.looked_at: set[str] = set()
        """Jobs looked at since this process started (the chain may be ahead of the store)."""
        self.history: HistoryRecorder | None = None
        """Where ended jobs' figures go (hour by hour), when the coordinator keeps history."""
        self.results: PinRetention | None = None
        """Where settled jobs' results are kept pinned (None: ``result_retention_s`` is 0)."""
        self.matching = Matching(self)
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

    async def input_bytes(self, job: JobRecord, spec: JobSpec) -> int:
        """All of the job's inputs together as their CIDs say (a file's size, a directory's
        DAG size), read once per job from their root blocks; 0 (not known: no provider is
        left out for its input limit) when one cannot be read within
        ``input_size_timeout_s``."""
        cached = self._input_sizes.get(job.job_id)
        if cached is None:
            cached = 0
            with trio.move_on_after(self.config.input_size_timeout_s):
                try:
                    total = 0
                    for cid in spec.input_cids().values():
                        total += await self.content.size(cid)
                    cached = total
                except GpuMarketError as exc:
                    log.info("job %s: input sizes unknown: %s", job.job_id, exc)
            self._input_sizes[job.job_id] = cached
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
                job = await self.store.get_job(job_id)
            if self.results is not None and job.state in KEPT and job.result_cid:
                # Before the seats are counted: a job is stepped again after a restart only
                # until they are, so the result is kept (persisted) before that.
                self.results.keep(job.result_cid)  # idempotent: held once
            # Each seat's verified outcome, once its job ended (idempotent: counted once).
            await self.closer.reputation.record_job(self.store, self.book, job)
            if self.history is not None:
                await self.history.record_job(job)  # idempotent: counted once
            self.assigner.forget(job_id)
            self.book.capacity.release_job(job_id)
            self._specs.pop(job_id, None)
            self._input_sizes.pop(job_id, None)
            return True
        handler = {
            S.CREATED: self.matching.created,
            S.MATCHING: self.matching.created,
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

    # ------------------------------------------------------------------- reveals
    async def accept_reveal(self, job: JobRecord, slot: ProviderSlot, reveal: Reveal) -> bool:
        """Store a reveal that opens the seat's commitment and carries a valid signature."""
        return await self.closer.accept_reveal(job, slot, reveal)

    async def cancel_at(self, slot: ProviderSlot, job: JobRecord, reason: str) -> None:
        with trio.move_on_after(self.config.request_timeout_s):
            await self.dispatcher.cancel(target_of(slot), job_key(job), reason)


def new_seed() -> int:
    return secrets.randbelow(2**63)
