"""The first phase of a job: from ``created`` through ``matching`` to ``assigned``.

On its first look since this process started, a job is checked against the chain (which may
be ahead of the store: cancelled, settled, or already assigned, then adopted). Then its spec
is read, providers are matched (a lone primary of an exact job only among providers another
operator could check), offered the seats and assigned once they consent. A job without
capacity waits in ``matching`` (its ``waiting`` says why) until its assign deadline.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from contracts.models import JobStatus
from coordinator.lifecycle.offers import job_key
from coordinator.matching.requirements import requirements_for
from coordinator.store import JobRecord
from protocol.errors import ContentError, MatchError, SpecError
from protocol.lifecycle import JobState

if TYPE_CHECKING:
    from coordinator.lifecycle.driver import JobDriver

log = logging.getLogger(__name__)

S = JobState
MAX_REASON_CHARS = 4000


class Matching:
    def __init__(self, driver: JobDriver) -> None:
        self.d = driver

    async def _first_look(self, job: JobRecord) -> bool:
        """First look since this process started: the chain may be ahead of the store.
        True when the job moved on (nothing more to do in this step)."""
        self.d.looked_at.add(job.job_id)
        status, count = await self.d.chain.job_status(job_key(job))
        if status is JobStatus.CANCELLED:
            await self.d.move(job, S.CANCELLED, {"reason": "cancelled by the requester"})
        elif status is JobStatus.SETTLED:
            await self.d.move(job, S.SETTLED)
        elif status is JobStatus.RECLAIMED:
            await self.d.move(job, S.RECLAIMED)
        elif status is JobStatus.ABORTED:
            await self.d.move(job, S.FAILED, {"reason": "aborted on chain"})
        elif count > 0:
            slots = await self.d.store.slots(job.job_id)
            await self.d.assigner.adopt(job, slots, await self.d.chain.get_seats(job_key(job)))
            providers = [
                s.address for s in await self.d.store.slots(job.job_id) if s.state.on_chain
            ]
            await self.d.move(job, S.ASSIGNED, {"providers": providers, "adopted": True})
        else:
            return False
        return True

    async def created(self, job: JobRecord) -> None:
        waiting = job.job_id in self.d.assigner.waiting()
        if waiting and self.d.chain_now() > job.assign_deadline:
            self.d.assigner.forget(job.job_id)
            await self.d.fail(job, await self._nobody_reason(job))
            return
        if self.d.assigner.unchanged(job.job_id):
            return  # still waiting, and nothing in the book changed since the last try
        if not waiting and job.job_id not in self.d.looked_at and await self._first_look(job):
            return
        try:
            spec = await self.d.spec(job)
        except SpecError as exc:
            await self.d.fail(job, f"invalid spec: {exc}")
            return
        except ContentError as exc:
            log.warning("job %s: spec %s not available yet: %s", job.job_id, job.spec_cid, exc)
            if self.d.chain_now() > job.assign_deadline:
                await self.d.fail(job, f"spec unavailable: {exc}")
            return
        req = requirements_for(
            spec,
            count=job.redundancy,
            price_cap=job.price_cap,
            exact=job.exact,
            input_bytes=await self.d.input_bytes(job, spec),
        )
        # A lone primary must be checkable: someone else must be able to re-run its job.
        req = replace(req, checkable=req.count == 1)
        if job.requirements is None:
            job = await self.d.store.update_job(job.job_id, requirements=req.to_json())
        if self.d.chain_now() + self.d.config.tx_margin_s > job.assign_deadline:
            await self.d.fail(job, await self._nobody_reason(job))
            return
        if job.state is S.CREATED:
            job = await self.d.move(job, S.MATCHING, {"providers_wanted": job.redundancy}) or job
        slots = await self.d.store.slots(job.job_id)
        if not slots:
            if await self.d.store.declines(job.job_id):
                more = await self.d.seating.more(job, [], [], job.redundancy)
                req = replace(more, checkable=req.checkable)
            planned = await self.d.assigner.admit(job, req)
            if planned is None:
                return  # waits in matching until capacity frees up (or the deadline passes)
            slots = planned
        elif len(slots) < job.redundancy:  # seats given back by providers that declined
            more = await self.d.seating.more(job, slots, slots, job.redundancy - len(slots))
            try:
                await self.d.assigner.plan_or_queue(job, more, slots)
            except MatchError as exc:
                await self.d.store.update_job(job.job_id, waiting=str(exc)[:1000])
                return
            slots = await self.d.store.slots(job.job_id)
        tx = await self.d.assigner.submit(job, slots)
        onchain = [s.address for s in await self.d.store.slots(job.job_id) if s.state.on_chain]
        if onchain:
            await self.d.move(job, S.ASSIGNED, {"tx": tx, "providers": onchain}, waiting=None)

    async def _nobody_reason(self, job: JobRecord) -> str:
        """Why no provider took the job: who declined and why, else what the matcher said."""
        declines = await self.d.store.declines(job.job_id)
        busy = [s for s in await self.d.store.slots(job.job_id) if s.busy]
        if busy:
            said = "; ".join(f"{s.address}: {s.detail}" for s in busy[-8:])
            reason = f"providers still busy at the assign deadline: {said}"
        elif declines:
            said = "; ".join(f"{d.address}: {d.reason}" for d in declines[-8:])
            reason = f"no providers accepted before the assign deadline: {said}"
        else:
            why = job.waiting or "no capacity"
            reason = f"no providers matched before the assign deadline: {why}"
        return reason[:MAX_REASON_CHARS]
