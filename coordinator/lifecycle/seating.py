"""A job's seats while it runs: delivering assignments, noticing failures, adding seats.

Seats beyond the first ones (a replacement for a provider that failed before committing,
a spot-checker behind a lone primary, a tie-breaker after a split) are added under the
contract's rule: while ``now <= spareDeadline`` and ``now <= revealOpen`` of the seats
already there (no seat can join once reveals may be published), up to ``redundancy + 2``
seats in all. Each new seat gets its provider's consent first (:mod:`coordinator.lifecycle.offers`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import trio

from coordinator.lifecycle.offers import job_key, target_of
from coordinator.matching.book import fingerprint_key
from coordinator.matching.requirements import Requirements, requirements_for
from coordinator.store import JobRecord, ProviderSlot, SeatFailure
from proofs.policy import PolicyTerms
from protocol.errors import MatchError
from protocol.ids import Address, Cid, Wei
from protocol.lifecycle import JobState, SeatState
from protocol.messages import Assignment

if TYPE_CHECKING:
    from coordinator.lifecycle.driver import JobDriver

log = logging.getLogger(__name__)

S = JobState
P = SeatState
MAX_DETAIL_CHARS = 1000
MAX_REASON_CHARS = 4000
WAITING = frozenset({P.ASSIGNED, P.RUNNING})


def on_chain(slots: list[ProviderSlot]) -> list[ProviderSlot]:
    return sorted((s for s in slots if s.state.on_chain), key=lambda s: s.idx)


class Seating:
    def __init__(self, driver: JobDriver) -> None:
        self.d = driver

    # ------------------------------------------------------------------ rules
    def can_add(self, job: JobRecord, slots: list[ProviderSlot]) -> bool:
        """Whether the contract still takes one more seat (with time to mine the assign)."""
        if len(slots) >= job.terms().max_seats:
            return False
        now = self.d.chain_now() + self.d.config.tx_margin_s
        seats = [s.seat() for s in on_chain(slots)]
        if not seats:
            return now <= job.assign_deadline
        return now <= job.spare_deadline and now <= job.terms().reveal_open(seats)

    async def more(
        self, job: JobRecord, slots: list[ProviderSlot], active: list[ProviderSlot], count: int
    ) -> Requirements:
        """Requirements for ``count`` more seats: not a provider (nor an operator group) the
        job already has or that declined it, and for exact jobs the same fingerprint."""
        spec = await self.d.spec(job)
        base = requirements_for(
            spec,
            count=count,
            price_cap=job.price_cap,
            exact=job.exact,
            input_bytes=await self.d.input_bytes(job, spec),
        )
        fingerprint = None
        if base.exact and active:
            advert = self.d.book.find(active[0].address)
            if advert is not None:
                fingerprint = fingerprint_key(advert)
        groups = self.d.book.groups_of(s.address for s in slots)
        declined = {d.address for d in await self.d.store.declines(job.job_id)}
        return replace(
            base,
            exclude_addresses=frozenset({s.address for s in slots} | declined),
            exclude_groups=frozenset(groups),
            fingerprint=fingerprint,
        )

    async def add(
        self,
        job: JobRecord,
        slots: list[ProviderSlot],
        active: list[ProviderSlot],
        *,
        replaces: int | None = None,
    ) -> ProviderSlot:
        """Plan one more seat and offer it (assigning it if consent comes at once); returns
        the seat planned. Raises ``MatchError`` when nobody fits."""
        req = await self.more(job, slots, active, 1)
        planned = await self.d.assigner.plan(job, req, slots, replaces=replaces)
        await self.d.assigner.submit(job, slots + planned)
        return planned[0]

    async def _pending(self, job: JobRecord, slots: list[ProviderSlot]) -> list[ProviderSlot]:
        """Seats waiting for consent: offered (and assigned once consented) while the
        contract takes them, given back once it no longer does."""
        pending = [s for s in slots if not s.state.on_chain]
        if not pending:
            return slots
        if self.can_add(job, [s for s in slots if s.state.on_chain]):
            await self.d.assigner.submit(job, slots)
        else:
            for s in pending:
                await self.d.assigner.offerer.decline(
                    job, s, "no consent before the contract stopped taking seats"
                )
        return await self.d.store.slots(job.job_id)

    # --------------------------------------------------------------- assigned
    async def assigned(self, job: JobRecord) -> None:
        slots = await self._pending(job, await self.d.store.slots(job.job_id))
        slots = await self._mark_replaced(job, slots)
        deliver = [
            s
            for s in slots
            if s.state is P.ASSIGNED
            and s.peer_id
            and (not s.busy or self.d.book.looks_free(s.address))
        ]
        if job.job_id not in self.d.looked_at:
            # First look at this job since this process started: deliver the assignment
            # again to providers still working on it (idempotent for them), which also
            # re-establishes the connection they report on after a coordinator restart.
            self.d.looked_at.add(job.job_id)
            deliver += [s for s in slots if s.state is P.RUNNING and not s.committed and s.peer_id]
        if deliver:
            async with trio.open_nursery() as nursery:
                for slot in deliver:
                    name = f"deliver {job.job_id[:10]} seat {slot.idx}"
                    nursery.start_soon(self._deliver, job, slot, slots, name=name)
            slots = await self.d.store.slots(job.job_id)
        slots = await self._notice_failures(job, slots)
        if await self._replace_failed(job, slots):
            await self._mark_replaced(job, await self.d.store.slots(job.job_id))
            return
        seated = on_chain(slots)
        active = [s for s in seated if s.active]
        committed = [s for s in seated if s.committed]
        waiting = [s for s in active if s.state in WAITING and not s.committed]
        pending = [s for s in slots if not s.state.on_chain]
        if waiting or pending:
            if (
                job.state is S.ASSIGNED
                and active
                and all(s.state is not P.ASSIGNED for s in active)
            ):
                await self.d.move(job, S.RUNNING, {"providers": [s.address for s in active]})
            return
        if committed:
            if job.redundancy == 1 and await self._spot_check(job, slots):
                return
            await self.d.move(job, S.COMMITTED, {"committed": [s.address for s in committed]})
            return
        fresh = await self.d.store.get_job(job.job_id)
        await self.d.fail(fresh, every_provider_failed(slots), fresh.failure_provider)

    async def _mark_replaced(self, job: JobRecord, slots: list[ProviderSlot]) -> list[ProviderSlot]:
        """A failed seat whose replacement is on chain is replaced; its provider is told."""
        by_idx = {s.idx: s for s in slots}
        done = [
            by_idx[s.replaces]
            for s in on_chain(slots)
            if s.replaces is not None
            and s.replaces in by_idx
            and by_idx[s.replaces].state is P.FAILED
        ]
        for old in done:
            await self.d.store.update_slot(
                job.job_id, old.idx, only_if=frozenset({P.FAILED}), state=P.REPLACED
            )
            await self.d.cancel_at(old, job, "replaced")
        return await self.d.store.slots(job.job_id) if done else slots

    async def _notice_failures(
        self, job: JobRecord, slots: list[ProviderSlot]
    ) -> list[ProviderSlot]:
        """Seats gone silent, or past their commit deadline without a commitment, failed."""
        now = self.d.now()
        changed = False
        for s in on_chain(slots):
            if s.state not in WAITING or s.committed:
                continue
            deadline = s.commit_deadline(job.commit_window)
            if deadline is not None and now > deadline:
                detail = "no commitment by its commit deadline"
            elif s.state is P.RUNNING and self.d.book.silent(s.address):
                detail = "went silent (no adverts)"
            else:
                continue
            await self.d.store.update_slot(
                job.job_id,
                s.idx,
                only_if=WAITING,
                state=P.FAILED,
                detail=detail,
                failure=SeatFailure.TIMEOUT,
            )
            changed = True
        return await self.d.store.slots(job.job_id) if changed else slots

    def _message(
        self,
        job: JobRecord,
        slot: ProviderSlot,
        slots: list[ProviderSlot],
        spec_inputs: Mapping[str, str],
    ) -> Assignment:
        terms = job.terms()
        deadline = slot.commit_deadline(job.commit_window)
        assert deadline is not None
        return Assignment(
            job_id=job_key(job),
            provider=Address(slot.address),
            coordinator=self.d.identity.address,
            seat=slot.idx,
            price=Wei(slot.price),
            spec_cid=Cid(job.spec_cid),
            input_cids={k: Cid(v) for k, v in spec_inputs.items()},
            seed=job.seed,
            commit_deadline=deadline,
            reveal_deadline=terms.reveal_close([s.seat() for s in on_chain(slots)]),
        )

    async def _deliver(self, job: JobRecord, slot: ProviderSlot, slots: list[ProviderSlot]) -> None:
        spec = await self.d.spec(job)
        message = self._message(job, slot, slots, spec.input_cids())
        refusal = await self.d.dispatcher.assign(target_of(slot), message)
        store = self.d.store
        if refusal is not None and refusal.busy:
            # Still running another job (ours or someone else's): not a failure. The job
            # keeps its seat and is delivered again once a slot there looks free.
            self.d.book.mark_busy(slot.address)
            detail = f"waiting: provider busy: {refusal.message}"[:MAX_DETAIL_CHARS]
            await store.update_slot(
                job.job_id, slot.idx, only_if=frozenset({P.ASSIGNED}), busy=True, detail=detail
            )
            return
        # Only a seat still waiting for this answer changes: a commitment may have
        # arrived meanwhile, and it must not be overwritten.
        if refusal is None or refusal.already_done:
            cleared: dict[str, object] = {"busy": False, "detail": None} if slot.busy else {}
            await store.update_slot(
                job.job_id, slot.idx, only_if=frozenset({P.ASSIGNED}), state=P.RUNNING, **cleared
            )
        else:
            detail = f"assignment refused: {refusal.code}: {refusal.message}"[:MAX_DETAIL_CHARS]
            await store.update_slot(
                job.job_id,
                slot.idx,
                only_if=WAITING,
                state=P.FAILED,
                detail=detail,
                # no answer at all is a liveness failure; an answer refusing it, a fault
                failure=SeatFailure.TIMEOUT if refusal.code == "unreachable" else SeatFailure.FAULT,
            )
            log.info(
                "job %s: %s refused the assignment: %s",
                job.job_id[:18],
                slot.address,
                refusal.message,
            )
        self.d.signals.fire(job.job_id)

    async def _replace_failed(self, job: JobRecord, slots: list[ProviderSlot]) -> bool:
        """Seek a replacement for one failed, uncommitted seat if the contract still takes
        one; True if one was planned (it replaces the seat once it is on chain)."""
        sought = {s.replaces for s in slots if not s.state.on_chain}
        failed = [
            s
            for s in on_chain(slots)
            if s.state is P.FAILED and not s.committed and s.idx not in sought
        ]
        if not failed or not self.can_add(job, slots):
            return False
        fresh = await self.d.store.get_job(job.job_id)
        if fresh.failure_provider is not None:
            return False  # the job itself failed (bad code or input): another run fails too
        active = [s for s in on_chain(slots) if s.active]
        try:
            new = await self.add(job, slots, active, replaces=failed[0].idx)
        except MatchError as exc:
            log.info("job %s: no replacement for %s: %s", job.job_id[:18], failed[0].address, exc)
            return False
        detail: dict[str, object] = {"replacing": failed[0].address, "by": new.address}
        if job.state is S.ASSIGNED:
            await self.d.store.transition(job.job_id, S.ASSIGNED, detail)
            self.d.signals.fire(job.job_id)
        else:
            await self.d.move(job, S.ASSIGNED, detail)
        return True

    async def _spot_check(self, job: JobRecord, slots: list[ProviderSlot]) -> bool:
        """Draw (once, persisted) whether a lone primary is checked; True while a checker
        is being added (planned again if the one chosen declined).

        The draw happens only after the primary committed, so it cannot know in advance.
        """
        if job.spot_checked is None:
            primary = next(s for s in on_chain(slots) if s.committed)
            standing = self.d.closer.reputation.standing(
                primary.address, primary.price * self.d.config.stake_factor
            )
            plan = self.d.config.policy.plan(
                standing, PolicyTerms(price=primary.price, requester_redundancy=1)
            )
            checked = plan.replicas >= 2 or self.d.config.rng.random() < plan.spot_check_p
            job = await self.d.store.update_job(
                job.job_id,
                spot_checked=checked,
                spot_check_p=plan.spot_check_p if plan.replicas < 2 else 1.0,
                spot_check_note=plan.reason,
            )
        if not job.spot_checked or any(s.address == job.checker for s in slots):
            return False
        if not self.can_add(job, slots):
            if job.checker is None:
                await self._unseated(job, "no time left to seat a checker")
            return False
        try:
            checker = await self.add(job, slots, [s for s in on_chain(slots) if s.active])
        except MatchError as exc:
            # Nobody free to check right now: keep trying while the contract takes a seat.
            await self.d.store.update_job(job.job_id, waiting=f"checker: {exc}"[:1000])
            return True
        job = await self.d.store.update_job(job.job_id, checker=checker.address, waiting=None)
        await self.d.store.transition(job.job_id, job.state, {"spot_check": checker.address})
        self.d.signals.fire(job.job_id)
        return True

    async def _unseated(self, job: JobRecord, why: str) -> None:
        """A drawn check that could not be seated: the job goes unchecked (a miss), and
        ``spot_check_note`` says why."""
        log.warning("job %s: spot check drawn but not seated: %s", job.job_id[:18], why)
        await self.d.store.update_job(
            job.job_id, spot_checked=False, spot_check_note=f"drawn, not seated: {why}"[:1000]
        )

    # --------------------------------------------------------------- disputed
    async def disputed(self, job: JobRecord) -> None:
        """Bring in a tie-breaker: one more seat, from an operator group no disputant has."""
        slots = await self.d.store.slots(job.job_id)
        before = len(on_chain(slots))
        if any(not s.state.on_chain for s in slots):
            await self._pending(job, slots)
        else:
            if not self.can_add(job, slots):
                await self._undisputed(job, "no room for a tie-breaker")
                return
            voters = [s for s in on_chain(slots) if s.state is P.REVEALED]
            try:
                chosen = await self.add(job, slots, voters)
            except MatchError as exc:
                await self.d.store.update_job(job.job_id, waiting=f"tie-breaker: {exc}"[:1000])
                return
            await self.d.store.transition(job.job_id, S.DISPUTED, {"tie_breaker": chosen.address})
            self.d.signals.fire(job.job_id)
        slots = await self.d.store.slots(job.job_id)
        seated = on_chain(slots)
        if len(seated) > before:
            added = [s.address for s in seated[before:]]
            await self.d.move(job, S.ASSIGNED, {"tie_breaker": added})
        elif all(s.state.on_chain for s in slots) and not self.can_add(job, slots):
            await self._undisputed(job, "no tie-breaker consented in time")

    async def _undisputed(self, job: JobRecord, why: str) -> None:
        """No tie-breaker can join any more: the votes there are decide (or the job fails
        once the reveal window closes without a majority)."""
        await self.d.move(job, S.REVEALING, {"reason": why}, waiting=None)


def every_provider_failed(slots: list[ProviderSlot]) -> str:
    """The requester's failure reason: each failed provider and what it (or we) said."""
    details = [
        f"{s.address}: {s.detail}" for s in slots if s.state in (P.FAILED, P.REPLACED) and s.detail
    ]
    if not details:
        return "every provider failed and none can replace them"
    return ("every provider failed: " + "; ".join(details))[:MAX_REASON_CHARS]
