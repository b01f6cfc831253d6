"""Closing a job: reveals, the verdict, settlement, and the abort of a job nobody committed to.

Once every seat committed (or failed), each committed provider is asked for its reveal; a
reveal is kept only when its signature is the provider's and it opens the seat's
commitment (off chain, or the one it made on chain). The verdict
(:func:`coordinator.verification.verifier.decide`) is computed over what the chain will
count, including
reveals posted on chain (read back from the chain once reveals may be published), and the
settlement goes out only when it is valid now. What the chain paid comes back from the
``JobSettled`` event (:mod:`coordinator.chain.billing`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from contracts.errors import ContractError
from contracts.models import JobStatus, JobTerms
from coordinator.chain.billing import record_settlement, record_slash, unpack
from coordinator.chain.settlement import Settler
from coordinator.lifecycle.offers import job_key, target_of
from coordinator.matching.requirements import tolerance_of
from coordinator.store import JobRecord, ProviderSlot
from coordinator.verification.outputs import tolerance_groups
from coordinator.verification.reputation import ReputationBook
from coordinator.verification.verifier import Verdict, VerdictKind, decide, tally
from coordinator.wire.dispatcher import Refusal
from protocol.errors import ContentError, GpuMarketError
from protocol.ids import parse_address
from protocol.lifecycle import JobState, SeatState
from protocol.messages import Reveal

if TYPE_CHECKING:
    from coordinator.lifecycle.driver import JobDriver

log = logging.getLogger(__name__)

S = JobState
P = SeatState
MAX_DETAIL_CHARS = 1000


def backoff_s(attempts: int) -> float:
    """How long to wait before settling again after ``attempts`` refused settlements."""
    return float(min(60, 2**attempts))


def seated(slots: list[ProviderSlot]) -> list[ProviderSlot]:
    return sorted((s for s in slots if s.state.on_chain), key=lambda s: s.idx)


def _withholding(slot: ProviderSlot) -> bool:
    """The seat signed a commitment (off chain or on chain) and has not opened it."""
    signed = slot.commit_hash is not None and slot.commit_sig is not None
    opened = slot.state is P.REVEALED or slot.onchain_revealed
    return (signed or slot.onchain_commit is not None) and not opened


class Closer:
    def __init__(self, driver: JobDriver, settler: Settler, reputation: ReputationBook) -> None:
        self.d = driver
        self.settler = settler
        self.reputation = reputation

    # ------------------------------------------------------------------ reveals
    async def committed(self, job: JobRecord) -> None:
        slots = await self._ask_reveals(job, await self.d.store.slots(job.job_id))
        if any(s.state is P.COMMITTED for s in slots) and self.d.now() <= job.settle_deadline:
            return
        revealed = [s.address for s in slots if s.state is P.REVEALED]
        await self.d.move(job, S.REVEALING, {"revealed": revealed})

    async def _ask_reveals(self, job: JobRecord, slots: list[ProviderSlot]) -> list[ProviderSlot]:
        """Ask every committed seat that has not revealed yet for its reveal."""
        asking = [s for s in slots if s.state is P.COMMITTED]
        if not asking or self.d.now() > job.settle_deadline:
            return slots
        async with trio.open_nursery() as nursery:
            for slot in asking:
                name = f"reveal {job.job_id[:10]} seat {slot.idx}"
                nursery.start_soon(self._reveal_one, job, slot, slots, name=name)
        return await self.d.store.slots(job.job_id)

    async def _reveal_one(
        self, job: JobRecord, slot: ProviderSlot, slots: list[ProviderSlot]
    ) -> None:
        deadline = job.terms().reveal_close([s.seat() for s in seated(slots)])
        answer = await self.d.dispatcher.request_reveal(
            target_of(slot), job_key(job), deadline, self.d.config.reveal_timeout_s
        )
        if isinstance(answer, Refusal):
            attempts = slot.reveal_attempts + 1
            gave_up = attempts >= self.d.config.reveal_attempts
            await self.d.store.update_slot(
                job.job_id,
                slot.idx,
                only_if=frozenset({P.COMMITTED}),
                state=P.FAILED if gave_up else P.COMMITTED,
                reveal_attempts=attempts,
                detail=f"reveal failed ({attempts}x): {answer.message}"[:MAX_DETAIL_CHARS],
            )
            return
        await self.accept_reveal(job, slot, answer)

    async def accept_reveal(self, job: JobRecord, slot: ProviderSlot, reveal: Reveal) -> bool:
        """Store a reveal that opens the seat's commitment and carries a valid signature."""
        if not slot.committed or slot.state is P.REVEALED:
            return slot.state is P.REVEALED and slot.reveal_sig == "0x" + reveal.signature.hex()
        if parse_address(reveal.provider) != parse_address(slot.address) or bytes(
            reveal.job_id
        ) != bytes(job_key(job)):
            await self._bad_reveal(job, slot, "reveal names another job or provider")
            return False
        try:
            reveal.verify(self.d.domain)
        except GpuMarketError as exc:
            await self._bad_reveal(job, slot, f"reveal signature invalid: {exc}")
            return False
        opened = "0x" + reveal.commit_hash().hex()
        if opened not in (slot.commit_hash, slot.onchain_commit):
            await self._bad_reveal(job, slot, "reveal does not open its commitment")
            return False
        await self.d.store.update_slot(
            job.job_id,
            slot.idx,
            state=P.REVEALED,
            result_cid=reveal.result_cid,
            runtime_ms=reveal.runtime_ms,
            salt="0x" + reveal.salt.hex(),
            reveal_sig="0x" + reveal.signature.hex(),
        )
        self.d.signals.fire(job.job_id)
        return True

    async def _bad_reveal(self, job: JobRecord, slot: ProviderSlot, detail: str) -> None:
        await self.d.store.update_slot(
            job.job_id,
            slot.idx,
            only_if=frozenset({P.COMMITTED, P.FAILED}),
            state=P.FAILED,
            detail=detail,
        )

    # ------------------------------------------------------------------ verdict
    async def revealed(self, job: JobRecord) -> None:
        # A seat may still have committed late (inside its window): ask it to reveal too.
        await self._ask_reveals(job, await self.d.store.slots(job.job_id))
        now = self.d.now()
        terms = job.terms()
        slots = seated(await self.d.store.slots(job.job_id))
        if now > terms.reveal_open([s.seat() for s in slots]):
            slots = await self._read_on_chain(job, slots)
        if job.exact and await self._withheld_until_close(job, slots, terms, now):
            return
        verdict = await self._verdict(job, slots, terms, now)
        if verdict is None:
            return  # outputs not fetchable yet (tolerance job)
        if verdict.kind is VerdictKind.WAIT:
            return  # a live seat may still vote; the next step looks again
        if verdict.kind is VerdictKind.NO_MAJORITY:
            if self.d.seating.can_add(job, await self.d.store.slots(job.job_id)):
                await self.d.move(job, S.DISPUTED, {"reason": verdict.reason})
            elif now <= terms.reveal_close([s.seat() for s in slots]):
                return  # votes may still be posted on chain until the reveal window closes
            else:
                await self.d.fail(job, verdict.reason)
            return
        await self._settle(job, slots, verdict)

    async def _withheld_until_close(
        self, job: JobRecord, slots: list[ProviderSlot], terms: JobTerms, now: int
    ) -> bool:
        """A seat that committed and has not opened its commitment is slashed only once the
        reveal window closes, so the job waits for that instead of settling early and
        releasing it. When the votes cannot outnumber the withheld commitments then, a
        tie-breaker is seated first. A seat still being asked for its reveal is waited for
        too. True while the job waits."""
        close = terms.reveal_close([s.seat() for s in slots])
        if now > close:
            return False
        if any(s.state is P.COMMITTED and _withholding(s) for s in slots):
            return True  # still being asked for its reveal
        withholding = [s.idx for s in slots if _withholding(s)]
        if not withholding:
            return False
        at_close = decide(job_key(job), slots, terms, close + 1)
        if at_close.kind is VerdictKind.NO_MAJORITY and self.d.seating.can_add(
            job, await self.d.store.slots(job.job_id)
        ):
            await self.d.move(
                job, S.DISPUTED, {"reason": f"seats {withholding} withheld their reveals"}
            )
        return True

    async def _verdict(
        self, job: JobRecord, slots: list[ProviderSlot], terms: JobTerms, now: int
    ) -> Verdict | None:
        groups = None
        if not job.exact:
            spec = await self.d.spec(job)
            tolerance = tolerance_of(spec) or (0.0, 0.0)
            votes = tally(slots, terms, now).votes
            try:
                groups = await tolerance_groups(
                    self.d.content, {i: v.cid for i, v in votes.items()}, tolerance, spec.max_output
                )
            except ContentError as exc:
                log.warning("job %s: cannot fetch outputs to compare: %s", job.job_id[:18], exc)
                return None
        verdict = decide(job_key(job), slots, terms, now, groups=groups)
        if verdict.kind is VerdictKind.NO_MAJORITY:
            # Signed commitments nobody opened raise the quorum; leaving them out (never
            # slashing their seats) is allowed and may still decide the job.
            lenient = decide(job_key(job), slots, terms, now, groups=groups, commits=False)
            if lenient.kind is not VerdictKind.NO_MAJORITY:
                return lenient
        return verdict

    async def _read_on_chain(self, job: JobRecord, slots: list[ProviderSlot]) -> list[ProviderSlot]:
        """Refresh what each seat put on chain (reveals may be published by now)."""
        for slot in slots:
            entry = await self.d.chain.on_chain_entry(job_key(job), slot.idx)
            if not (entry.committed or entry.revealed):
                continue
            hash_ = "0x" + entry.commit_hash.hex()
            fields: dict[str, Any] = {}
            if entry.committed and slot.onchain_commit is None:
                fields["onchain_commit"] = hash_
            if entry.revealed and slot.onchain_reveal_hash is None:
                fields.update(
                    onchain_reveal_hash=hash_,
                    onchain_result="0x" + entry.result.hex(),
                    onchain_runtime_ms=entry.runtime_ms,
                    onchain_votes=entry.votes,
                )
            if fields:
                await self.d.store.update_slot(job.job_id, slot.idx, **fields)
        return seated(await self.d.store.slots(job.job_id))

    async def _settle(self, job: JobRecord, slots: list[ProviderSlot], verdict: Verdict) -> None:
        assert verdict.settlement is not None
        if job.settle_attempts and time.time() - job.updated_at < backoff_s(job.settle_attempts):
            return  # refused a moment ago: give the chain (and the watcher) time to move
        result = await self.settler.settle(verdict.settlement)
        if not result.ok:
            attempts = job.settle_attempts + 1
            job = await self.d.store.update_job(job.job_id, settle_attempts=attempts)
            log.warning(
                "job %s: settlement refused (%d): %s", job.job_id[:18], attempts, result.error
            )
            if (
                attempts >= self.d.config.settle_attempts
                or self.d.chain_now() > job.settle_deadline
            ):
                await self.d.fail(job, f"settlement failed: {result.error}")
            return
        if result.settled is not None:
            await record_settlement(self.d.store, job.job_id, result.settled.args)
            for slash in result.slashed:
                await record_slash(
                    self.d.store, job.job_id, slash.args["provider"], int(slash.args["amount"])
                )
            winners = int(result.settled.args["winners"])
            figures = unpack(result.settled.args["paidAndBilled"])
            paid = {i: b for i, b in enumerate(figures) if winners >> i & 1}
            if paid != verdict.bills:
                log.warning(
                    "job %s: the market billed %s, this coordinator expected %s",
                    job.job_id[:18],
                    paid,
                    verdict.bills,
                )
        else:
            for idx, outcome in verdict.outcomes.items():
                await self.d.store.update_slot(job.job_id, idx, outcome=outcome)
        # The chain watcher may record "settled" first; the result is ours to keep either way.
        fields: dict[str, Any] = {"result_cid": verdict.result_cid}
        if result.tx_hash is not None:
            fields["settle_tx"] = result.tx_hash
        job = await self.d.store.update_job(job.job_id, **fields)
        billed = {
            str(i): {"billed_ms": b.billed_ms, "pay": str(b.pay)} for i, b in verdict.bills.items()
        }
        await self.d.move(
            job,
            S.SETTLED,
            {
                "tx": result.tx_hash,
                "reason": verdict.reason,
                "result_cid": verdict.result_cid,
                "billed": billed,
            },
        )
        await self._record_reputation(job)

    async def _record_reputation(self, job: JobRecord) -> None:
        """Count every seat's outcome now that the job settled (each seat once ever, whoever
        counts first: this step, a later one, or a restart; see
        coordinator.verification.reputation)."""
        fresh = await self.d.store.get_job(job.job_id)
        await self.reputation.record_job(self.d.store, self.d.book, fresh)

    # -------------------------------------------------------------------- abort
    async def abort(self, job: JobRecord) -> None:
        """End a failed job on chain at once when nobody committed: every lock is released
        and the requester refunded now, not at the settle deadline. A job some seat
        committed to stays for its providers' on-chain reveals (finalize) or reclaim."""
        if job.abort_tx is not None:
            return
        if any(s.committed for s in await self.d.store.slots(job.job_id)):
            return
        status, _ = await self.d.chain.job_status(job_key(job))
        if status not in (JobStatus.OPEN, JobStatus.ASSIGNED):
            return
        try:
            receipt = await self.d.chain.abort(job_key(job))
        except ContractError as exc:
            log.info("job %s: not aborted: %s", job.job_id[:18], exc)
            return
        aborted = receipt.named("JobAborted")
        refund = int(aborted[0].args["refund"]) if aborted else None
        await self.d.store.transition(
            job.job_id,
            S.FAILED,
            {"aborted": receipt.tx_hash, "refund": None if refund is None else str(refund)},
            abort_tx=receipt.tx_hash,
            refund=refund,
        )
        self.d.signals.fire(job.job_id)
        log.info("job %s: aborted, requester refunded (%s)", job.job_id[:18], receipt.tx_hash)
