"""Driving each job through its lifecycle, one step at a time, from the store and the chain.

:meth:`JobDriver.step` looks at a job's stored state (and the chain when it must) and does
the next thing: match and assign, deliver assignments, replace providers that failed,
wait for commitments, ask for reveals, verify, settle. Every step persists what it decided
before the side effect it causes, and every side effect checks the chain first, so a step
can be repeated after a crash or restart and does each thing exactly once.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import trio

from contracts.models import JobStatus
from coordinator.assigning import Assigner
from coordinator.book import ProviderBook, fingerprint_key
from coordinator.chain_io import AsyncChain
from coordinator.dispatcher import Dispatcher, Refusal, Target
from coordinator.errors import InvalidTransition
from coordinator.outputs import tolerance_groups
from coordinator.reputation import ReputationBook
from coordinator.requirements import Requirements, requirements_for, tolerance_of
from coordinator.settlement import Settler
from coordinator.signals import Signals
from coordinator.states import JobState, Outcome, ProviderState
from coordinator.store import AsyncStore, JobRecord, ProviderSlot
from coordinator.verifier import decide
from proofs.policy import JobTerms, StakeAwarePolicy, VerificationPolicy
from protocol import eip712
from protocol.errors import ContentError, GpuMarketError, MatchError, SpecError
from protocol.identity import Identity
from protocol.ids import Address, Cid, JobId, PeerId, Wei
from protocol.ipfs.store import ContentStore
from protocol.messages import Assignment as AssignmentMessage
from protocol.messages import Commitment, Reveal
from protocol.registry import MAX_SPEC_BYTES
from protocol.spec import JobSpec
from protocol.spec_io import parse_spec

log = logging.getLogger(__name__)

REVEAL_ATTEMPTS = 3
BUSY_DETAIL = "waiting: provider busy: "
S = JobState
P = ProviderState


@dataclass
class DriverConfig:
    request_timeout_s: float = 10.0
    reveal_timeout_s: float = 60.0
    max_output_bytes: int = 1 << 30
    stake_factor: int = 5
    policy: VerificationPolicy = field(default_factory=StakeAwarePolicy)
    rng: random.Random = field(default_factory=random.SystemRandom)


def job_bytes(job: JobRecord) -> JobId:
    return JobId(bytes.fromhex(job.job_id[2:]))


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
        self.settler = settler
        self.reputation = reputation
        self.signals = signals
        self.domain = domain
        self.chain_now = chain_now
        self.config = config or DriverConfig()
        self._specs: dict[str, JobSpec] = {}
        self._resumed: set[str] = set()

    # ------------------------------------------------------------------ plumbing
    async def _move(
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

    async def _fail(self, job: JobRecord, reason: str, provider: str | None = None) -> None:
        await self._move(
            job, S.FAILED, {"reason": reason}, failure_reason=reason, failure_provider=provider
        )

    # ---------------------------------------------------------------------- step
    async def step(self, job_id: str) -> bool:
        """Advance one job as far as it can go now; True once it needs nothing more."""
        job = await self.store.get_job(job_id)
        if job.state.final or job.state is S.FAILED:
            self.assigner.forget(job_id)
            self.book.capacity.release_job(job_id)
            return True
        handler = {
            S.CREATED: self._created,
            S.ASSIGNED: self._assigned,
            S.RUNNING: self._assigned,
            S.COMMITTED: self._committed,
            S.REVEALED: self._revealed,
            S.DISPUTED: self._disputed,
        }[job.state]
        await handler(job)
        # Providers done with this job (committed, failed, replaced) free their job slot.
        self.book.capacity.sync(job_id, await self.store.slots(job_id))
        return False

    # ------------------------------------------------------------------- created
    async def _created(self, job: JobRecord) -> None:
        waiting = job.job_id in self.assigner.waiting()
        if waiting and self.chain_now() > job.assign_deadline:
            self.assigner.forget(job.job_id)
            reason = job.failure_reason or "no capacity"
            await self._fail(job, f"no providers matched before the assign deadline: {reason}")
            return
        if self.assigner.unchanged(job.job_id):
            return  # still waiting, and nothing in the book changed since the last try
        assigned = 0
        if not waiting:
            # First look since this process started: the chain may be ahead of the store.
            # (A waiting job has nothing on chain; the chain watcher reports cancellation.)
            status, assigned = await self.chain.job_status(job_bytes(job))
            if status is JobStatus.CANCELLED:
                await self._move(job, S.CANCELLED, {"reason": "cancelled by the requester"})
                return
            if status in (JobStatus.SETTLED, JobStatus.RECLAIMED):
                await self._move(job, S.SETTLED if status is JobStatus.SETTLED else S.RECLAIMED)
                return
        try:
            spec = await self.spec(job)
        except SpecError as exc:
            await self._fail(job, f"invalid spec: {exc}")
            return
        except ContentError as exc:
            log.warning("job %s: spec %s not available yet: %s", job.job_id, job.spec_cid, exc)
            if self.chain_now() > job.assign_deadline:
                await self._fail(job, f"spec unavailable: {exc}")
            return
        req = requirements_for(
            spec, count=job.redundancy, price_cap=job.price_cap, exact=job.mode == 0
        )
        if job.requirements is None:
            job = await self.store.update_job(job.job_id, requirements=req.to_json())
        slots = await self.store.slots(job.job_id)
        if assigned == 0 and not slots:
            if self.chain_now() > job.assign_deadline:
                await self._fail(job, "no providers matched before the assign deadline")
                return
            planned = await self.assigner.admit(job, req)
            if planned is None:
                return  # waits in created until capacity frees up (or the deadline passes)
            slots = planned
        tx = await self.assigner.submit(job, slots)
        providers = [s.address for s in await self.store.slots(job.job_id)]
        await self._move(job, S.ASSIGNED, {"tx": tx, "providers": providers}, failure_reason=None)

    # -------------------------------------------------------- assigned / running
    def _target(self, slot: ProviderSlot) -> Target:
        return Target(Address(slot.address), PeerId(slot.peer_id), slot.multiaddrs)

    async def _assignment_message(self, job: JobRecord, slot: ProviderSlot) -> AssignmentMessage:
        spec = await self.spec(job)
        inputs = {k: Cid(v) for k, v in spec.input_cids().items()}
        return AssignmentMessage(
            job_id=job_bytes(job),
            provider=Address(slot.address),
            coordinator=self.identity.address,
            price=Wei(slot.price),
            spec_cid=Cid(job.spec_cid),
            input_cids=inputs,
            seed=job.seed,
            commit_deadline=job.commit_deadline,
            reveal_deadline=reveal_deadline(job),
        )

    async def _deliver(self, job: JobRecord, slot: ProviderSlot) -> None:
        message = await self._assignment_message(job, slot)
        refusal = await self.dispatcher.assign(self._target(slot), message)
        if refusal is not None and refusal.busy:
            # Still running another job (ours or someone else's): not a failure. The job
            # keeps its seat and is delivered again once a slot there looks free.
            self.book.columns.mark_full(slot.address, self.book.clock())
            await self.store.update_slot(
                job.job_id,
                slot.idx,
                only_if=frozenset({P.ASSIGNED}),
                detail=f"{BUSY_DETAIL}{refusal.message}"[:1000],
            )
            return
        busy_before = (slot.detail or "").startswith(BUSY_DETAIL)
        # Only a slot still waiting for this answer changes: a commitment may have
        # arrived meanwhile, and it must not be overwritten.
        waiting = frozenset({P.ASSIGNED, P.RUNNING})
        if refusal is None or refusal.already_done:
            cleared = {"detail": None} if busy_before else {}
            await self.store.update_slot(
                job.job_id, slot.idx, only_if=frozenset({P.ASSIGNED}), state=P.RUNNING, **cleared
            )
        else:
            detail = f"assignment refused: {refusal.code}: {refusal.message}"[:1000]
            await self.store.update_slot(
                job.job_id, slot.idx, only_if=waiting, state=P.FAILED, detail=detail
            )
            log.info(
                "job %s: %s refused the assignment: %s",
                job.job_id[:18],
                slot.address,
                refusal.message,
            )
        self.signals.fire(job.job_id)

    def _may_deliver(self, address: str, detail: str | None) -> bool:
        """A provider that refused as busy gets the job again only once a slot looks free."""
        if not (detail or "").startswith(BUSY_DETAIL):
            return True
        cols = self.book.columns
        slot = cols.slot(address)
        if slot is None:
            return True
        if cols.full_since[slot] >= cols.seen_at[slot]:
            return False  # refused since its last advert, and none of ours finished there
        return self.book.capacity.running_at(address) < int(cols.job_capacity[slot])

    async def _assigned(self, job: JobRecord) -> None:
        slots = await self.store.slots(job.job_id)
        planned = [s for s in slots if s.state is P.PLANNED]
        if planned:  # a replacement or tie-breaker chosen but not yet on chain
            await self.assigner.submit(job, slots)
            slots = await self.store.slots(job.job_id)
        pending = [
            s
            for s in slots
            if s.state is P.ASSIGNED and s.peer_id and self._may_deliver(s.address, s.detail)
        ]
        if job.job_id not in self._resumed:
            # First look at this job since this process started: deliver the assignment
            # again to providers still working on it (idempotent for them), which also
            # re-establishes the connection they report on after a coordinator restart.
            self._resumed.add(job.job_id)
            pending += [
                s for s in slots if s.state is P.RUNNING and not s.commit_hash and s.peer_id
            ]
        if pending:
            async with trio.open_nursery() as nursery:
                for slot in pending:
                    nursery.start_soon(self._deliver, job, slot)
            slots = await self.store.slots(job.job_id)
        for s in slots:
            if s.state is P.RUNNING and not s.commit_hash and self.book.silent(s.address):
                await self.store.update_slot(
                    job.job_id,
                    s.idx,
                    only_if=frozenset({P.RUNNING}),
                    state=P.FAILED,
                    detail="went silent (no adverts)",
                )
                slots = await self.store.slots(job.job_id)
        if self.chain_now() > job.commit_deadline:
            for s in slots:
                if s.state in (P.ASSIGNED, P.RUNNING):
                    await self.store.update_slot(
                        job.job_id,
                        s.idx,
                        only_if=frozenset({P.ASSIGNED, P.RUNNING}),
                        state=P.FAILED,
                        detail="no commitment by the commit deadline",
                    )
            slots = await self.store.slots(job.job_id)
        if await self._replace_failed(job, slots):
            return
        active = [s for s in slots if s.active]
        committed = [s for s in slots if s.commit_hash]
        waiting = [s for s in active if s.state in (P.ASSIGNED, P.RUNNING) and not s.commit_hash]
        if not waiting and committed:
            if job.redundancy == 1 and await self._spot_check(job, slots):
                return
            await self._move(job, S.COMMITTED, {"committed": [s.address for s in committed]})
        elif not waiting and not committed:
            fresh = await self.store.get_job(job.job_id)
            await self._fail(fresh, every_provider_failed(slots), fresh.failure_provider)
        elif job.state is S.ASSIGNED and all(s.state is not P.ASSIGNED for s in active):
            await self._move(job, S.RUNNING, {"providers": [s.address for s in active]})

    async def _spot_check(self, job: JobRecord, slots: list[ProviderSlot]) -> bool:
        """Draw (once, persisted) whether a lone primary is checked; True if a checker was added.

        The draw happens only after the primary committed, so it cannot know in advance.
        """
        terms = dict(job.requirements or {})
        if "spot_check" in terms:
            return False
        primary = next(s for s in slots if s.commit_hash)
        standing = self.reputation.standing(
            primary.address, primary.price * self.config.stake_factor
        )
        plan = self.config.policy.plan(
            standing, JobTerms(price=primary.price, requester_redundancy=1)
        )
        checked = plan.replicas >= 2 or self.config.rng.random() < plan.spot_check_p
        can_add = self._can_add(job, slots)
        terms["spot_check"] = {
            "checked": checked and can_add,
            "p": plan.spot_check_p,
            "reason": plan.reason,
        }
        job = await self.store.update_job(job.job_id, requirements=terms)
        if not checked or not can_add:
            return False
        active = [s for s in slots if s.active]
        req = await self._more(job, slots, active, 1)
        try:
            planned = await self.assigner.plan(job, req, slots)
        except MatchError as exc:
            log.info("job %s: no spot-checker available: %s", job.job_id[:18], exc)
            return False
        tx = await self.assigner.submit(job, slots + planned)
        await self.store.transition(
            job.job_id, job.state, {"spot_check": planned[0].address, "tx": tx}
        )
        self.signals.fire(job.job_id)
        return True

    def _can_add(self, job: JobRecord, slots: list[ProviderSlot]) -> bool:
        return len(slots) < job.redundancy + 1 and self.chain_now() < job.assign_deadline

    async def _replace_failed(self, job: JobRecord, slots: list[ProviderSlot]) -> bool:
        """Replace one failed, uncommitted provider if the contract still allows; True if done."""
        failed = [s for s in slots if s.state is P.FAILED and not s.commit_hash]
        if not failed or not self._can_add(job, slots):
            return False
        fresh = await self.store.get_job(job.job_id)
        if fresh.failure_provider is not None:
            return False  # the job itself failed (bad code or input): another run fails too
        active = [s for s in slots if s.active]
        req = await self._more(job, slots, active, 1)
        try:
            planned = await self.assigner.plan(job, req, slots)
        except MatchError as exc:
            log.info("job %s: no replacement for %s: %s", job.job_id[:18], failed[0].address, exc)
            return False
        await self.store.update_slot(job.job_id, failed[0].idx, state=P.REPLACED)
        tx = await self.assigner.submit(job, slots + planned)
        detail: dict[str, object] = {
            "replaced": failed[0].address,
            "by": planned[0].address,
            "tx": tx,
        }
        if job.state is S.ASSIGNED:
            await self.store.transition(job.job_id, S.ASSIGNED, detail)
        else:
            await self._move(job, S.ASSIGNED, detail)
        self.signals.fire(job.job_id)
        with trio.move_on_after(self.config.request_timeout_s):
            await self.dispatcher.cancel(self._target(failed[0]), job_bytes(job), "replaced")
        return True

    async def _more(
        self, job: JobRecord, slots: list[ProviderSlot], active: list[ProviderSlot], count: int
    ) -> Requirements:
        spec = await self.spec(job)
        base = requirements_for(spec, count=count, price_cap=job.price_cap, exact=job.mode == 0)
        fingerprint = None
        if base.exact and active:
            advert = self.book.find(active[0].address)
            if advert is not None:
                fingerprint = fingerprint_key(advert)
        groups = set()
        for s in slots:
            slot = self.book.columns.slot(s.address)
            if slot is not None and int(self.book.columns.group[slot]) != 0:
                groups.add(int(self.book.columns.group[slot]))
        return replace(
            base,
            exclude_addresses=frozenset(s.address for s in slots),
            exclude_groups=frozenset(groups),
            fingerprint=fingerprint,
        )

    # ----------------------------------------------------------------- committed
    async def _reveal_one(self, job: JobRecord, slot: ProviderSlot) -> None:
        answer = await self.dispatcher.request_reveal(
            self._target(slot), job_bytes(job), reveal_deadline(job), self.config.reveal_timeout_s
        )
        if isinstance(answer, Refusal):
            attempts = (
                int((slot.detail or "0").split(":")[0])
                if (slot.detail or "").split(":")[0].isdigit()
                else 0
            )
            attempts += 1
            state = P.FAILED if attempts >= REVEAL_ATTEMPTS else slot.state
            await self.store.update_slot(
                job.job_id,
                slot.idx,
                state=state,
                detail=f"{attempts}: reveal failed: {answer.message}"[:1000],
            )
            return
        await self.accept_reveal(job, slot, answer)

    async def accept_reveal(self, job: JobRecord, slot: ProviderSlot, reveal: Reveal) -> bool:
        """Store a reveal that opens the slot's commitment and carries a valid signature."""
        if slot.commit_hash is None or slot.commit_sig is None:
            return False
        commitment = Commitment(
            job_id=job_bytes(job),
            provider=Address(slot.address),
            commit_hash=bytes.fromhex(slot.commit_hash[2:]),
            signature=bytes.fromhex(slot.commit_sig[2:]),
        )
        try:
            reveal.verify(self.domain)
        except GpuMarketError as exc:
            await self.store.update_slot(
                job.job_id,
                slot.idx,
                state=P.FAILED,
                detail=f"reveal signature invalid: {exc}"[:1000],
            )
            return False
        if not reveal.matches(commitment):
            await self.store.update_slot(
                job.job_id, slot.idx, state=P.FAILED, detail="reveal does not open its commitment"
            )
            return False
        await self.store.update_slot(
            job.job_id,
            slot.idx,
            state=P.REVEALED,
            result_cid=reveal.result_cid,
            salt="0x" + reveal.salt.hex(),
            reveal_sig="0x" + reveal.signature.hex(),
        )
        self.signals.fire(job.job_id)
        return True

    async def _committed(self, job: JobRecord) -> None:
        slots = await self.store.slots(job.job_id)
        asking = [s for s in slots if s.state is P.COMMITTED]
        if asking and self.chain_now() <= job.settle_deadline:
            async with trio.open_nursery() as nursery:
                for slot in asking:
                    nursery.start_soon(self._reveal_one, job, slot)
            slots = await self.store.slots(job.job_id)
        if any(s.state is P.COMMITTED for s in slots) and self.chain_now() <= job.settle_deadline:
            return
        revealed = [s.address for s in slots if s.state is P.REVEALED]
        await self._move(job, S.REVEALED, {"revealed": revealed})

    # ------------------------------------------------------------------ revealed
    async def _revealed(self, job: JobRecord) -> None:
        slots = await self.store.slots(job.job_id)
        onchain = [s for s in slots if s.state is not P.PLANNED]
        exact = job.mode == 0
        groups = None
        if not exact:
            spec = await self.spec(job)
            tolerance = tolerance_of(spec) or (0.0, 0.0)
            try:
                groups = await tolerance_groups(self.content, onchain, tolerance, spec.max_output)
            except ContentError as exc:
                log.warning("job %s: cannot fetch outputs to compare: %s", job.job_id[:18], exc)
                return
        verdict = decide(job_bytes(job), onchain, job.redundancy, exact=exact, groups=groups)
        if not verdict.decided:
            if self._can_add(job, slots):
                await self._move(job, S.DISPUTED, {"reason": verdict.reason})
            else:
                await self._fail(job, verdict.reason)
            return
        assert verdict.settlement is not None
        result = await self.settler.settle(verdict.settlement)
        if not result.ok:
            if self.chain_now() > job.settle_deadline:
                await self._fail(job, f"settlement failed: {result.error}")
            return
        for idx, outcome in verdict.outcomes.items():
            await self.store.update_slot(job.job_id, idx, outcome=str(outcome))
        # The chain watcher may record "settled" first; the result is ours to keep either way.
        fields = {"result_cid": verdict.result_cid}
        if result.tx_hash is not None:
            fields["settle_tx"] = result.tx_hash
        job = await self.store.update_job(job.job_id, **fields)
        await self._move(
            job,
            S.SETTLED,
            {"tx": result.tx_hash, "reason": verdict.reason, "result_cid": verdict.result_cid},
        )
        if result.tx_hash is not None:  # sent by this process: counted exactly once
            await self._record_reputation(job, onchain, verdict.outcomes)

    async def _record_reputation(
        self, job: JobRecord, slots: list[ProviderSlot], outcomes: dict[int, Outcome]
    ) -> None:
        for s in slots:
            outcome = outcomes.get(s.idx)
            if outcome is Outcome.RELEASED or outcome is None:
                continue
            rep = self.reputation.record(s.address, success=outcome is Outcome.PAID)
            await self.store.save_reputation(s.address, rep.alpha, rep.beta, rep.updated_at)
            self.book.set_reputation(
                s.address,
                self.reputation.lower_bound(s.address),
                self.reputation.newcomer(s.address),
            )

    async def _disputed(self, job: JobRecord) -> None:
        """Bring in a tie-breaker: one more provider, appended to the assignment."""
        slots = await self.store.slots(job.job_id)
        if not self._can_add(job, slots):
            await self._fail(job, "no majority and no room for a tie-breaker")
            return
        if not any(s.state is P.PLANNED for s in slots):
            req = await self._more(job, slots, [s for s in slots if s.state is P.REVEALED], 1)
            try:
                await self.assigner.plan(job, req, slots)
            except MatchError as exc:
                await self.store.update_job(job.job_id, failure_reason=f"tie-breaker: {exc}")
                return
            slots = await self.store.slots(job.job_id)
        tx = await self.assigner.submit(job, slots)
        await self._move(
            job,
            S.ASSIGNED,
            {"tie_breaker": [s.address for s in slots if s.state is P.PLANNED], "tx": tx},
        )


MAX_REASON_CHARS = 4000


def every_provider_failed(slots: list[ProviderSlot]) -> str:
    """The requester's failure reason: each failed provider and what it (or we) said."""
    details = [
        f"{s.address}: {s.detail}" for s in slots if s.state in (P.FAILED, P.REPLACED) and s.detail
    ]
    if not details:
        return "every provider failed and none can replace them"
    return ("every provider failed: " + "; ".join(details))[:MAX_REASON_CHARS]


def reveal_deadline(job: JobRecord) -> int:
    """When providers must have revealed: most of the way from commit to settle deadline."""
    span = max(2, job.settle_deadline - job.commit_deadline)
    return job.commit_deadline + max(1, span * 3 // 4)


def new_seed() -> int:
    return secrets.randbelow(2**63)
