"""Asking providers for their consent to a seat: ``JobOffer`` -> ``Accept`` | ``Decline``.

Every seat not yet on chain is offered to its planned provider (seat index, price, rate,
expiry) in a signed envelope; the provider answers with its EIP-712 ``Accept``, which the
market's ``assign`` verifies, or a ``Decline``. What comes back is persisted before anything
else happens:

* a valid Accept (same seat, price, rate and expiry as offered, signed by the provider over
  the job's on-chain terms) makes the seat ``accepted``, with the signature and expiry the
  assign transaction needs, so a restart can resend it (or adopt what already landed);
* a busy Decline keeps the seat for that provider, flagged ``busy``: it is offered again
  once a job slot there looks free (:meth:`ProviderBook.looks_free`);
* any other Decline, an invalid Accept, or no usable answer gives the seat back (recorded
  in the job's declines, with the reason) so the driver plans another provider for it.

An accepted seat whose consent expires within :data:`RENEW_MARGIN_S` is offered again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import trio

from contracts.models import JobTerms
from coordinator.chain.chain_io import AsyncChain
from coordinator.matching.book import ProviderBook
from coordinator.signals import Signals
from coordinator.store import AsyncStore, JobRecord, ProviderSlot
from coordinator.wire.dispatcher import Dispatcher, Refusal, Target
from protocol import eip712
from protocol.errors import GpuMarketError
from protocol.identity import Identity
from protocol.ids import Address, Cid, JobId, PeerId, Wei
from protocol.lifecycle import SeatState
from protocol.messages import Accept, Decline, JobOffer

log = logging.getLogger(__name__)

OFFER_TTL_S = 300
"""How long a provider's consent stays valid on chain (from the chain's time of the offer)."""
RENEW_MARGIN_S = 30
"""An accepted offer expiring sooner than this is asked for again before it is sent."""
MAX_REASON_CHARS = 1000
P = SeatState


def job_key(job: JobRecord) -> JobId:
    return JobId(bytes.fromhex(job.job_id[2:]))


def target_of(slot: ProviderSlot) -> Target:
    return Target(Address(slot.address), PeerId(slot.peer_id), slot.multiaddrs)


def accept_problem(
    answer: Accept, offer: JobOffer, domain: eip712.Eip712Domain, terms: JobTerms
) -> str | None:
    """Why an Accept cannot be sent to the market, or None when it can."""
    for name in ("seat", "price", "rate_per_hour", "expiry"):
        if getattr(answer, name) != getattr(offer, name):
            return f"{name} {getattr(answer, name)} differs from the offered {getattr(offer, name)}"
    try:
        answer.verify(domain, terms.terms_hash())
    except GpuMarketError as exc:
        return f"signature: {exc}"
    return None


class Offerer:
    def __init__(
        self,
        identity: Identity,
        store: AsyncStore,
        chain: AsyncChain,
        book: ProviderBook,
        dispatcher: Dispatcher,
        signals: Signals,
        domain: eip712.Eip712Domain,
        *,
        chain_now: Callable[[], float],
        ttl_s: int = OFFER_TTL_S,
    ) -> None:
        self.identity = identity
        self.store = store
        self.chain = chain
        self.book = book
        self.dispatcher = dispatcher
        self.signals = signals
        self.domain = domain
        self.chain_now = chain_now
        self.ttl_s = ttl_s
        self._terms: dict[str, JobTerms] = {}

    async def terms(self, job: JobRecord) -> JobTerms:
        """The job's terms as the chain states them (what every Accept signs)."""
        terms = self._terms.get(job.job_id)
        if terms is None:
            terms = self._terms[job.job_id] = await self.chain.job_terms(job_key(job))
        return terms

    def forget(self, job_id: str) -> None:
        self._terms.pop(job_id, None)

    def usable(self, slot: ProviderSlot, now: float) -> bool:
        """An accepted seat whose consent is still valid long enough to be sent."""
        return (
            slot.state is P.ACCEPTED
            and slot.accept_sig is not None
            and slot.accept_expiry is not None
            and slot.accept_expiry >= now + RENEW_MARGIN_S
        )

    def due(self, slot: ProviderSlot, now: float) -> bool:
        """Whether the seat's provider should be asked (again) now."""
        if slot.state is P.ACCEPTED:
            return not self.usable(slot, now)
        if slot.state is not P.OFFERED:
            return False
        return not slot.busy or self.book.looks_free(slot.address)

    async def gather(self, job: JobRecord, slots: Sequence[ProviderSlot]) -> None:
        """Offer every seat in ``slots`` that is due, concurrently, and record the answers."""
        now = self.chain_now()
        due = [s for s in slots if self.due(s, now)]
        if not due:
            return
        terms = await self.terms(job)
        async with trio.open_nursery() as nursery:
            for slot in due:
                name = f"offer {job.job_id[:10]} seat {slot.idx}"
                nursery.start_soon(self._offer, job, slot, terms, name=name)

    def _message(self, job: JobRecord, slot: ProviderSlot) -> JobOffer:
        return JobOffer(
            job_id=job_key(job),
            provider=Address(slot.address),
            coordinator=self.identity.address,
            seat=slot.idx,
            price=Wei(slot.price),
            rate_per_hour=Wei(slot.rate_per_hour),
            expiry=int(self.chain_now()) + self.ttl_s,
            spec_cid=Cid(job.spec_cid),
            gpus=int((job.requirements or {}).get("gpus", 0)),
        )

    async def _offer(self, job: JobRecord, slot: ProviderSlot, terms: JobTerms) -> None:
        offer = self._message(job, slot)
        answer = await self.dispatcher.offer(target_of(slot), offer)
        if isinstance(answer, Accept):
            problem = accept_problem(answer, offer, self.domain, terms)
            if problem is None:
                await self.store.update_slot(
                    job.job_id,
                    slot.idx,
                    only_if=frozenset({P.OFFERED, P.ACCEPTED}),
                    state=P.ACCEPTED,
                    accept_sig="0x" + answer.signature.hex(),
                    accept_expiry=answer.expiry,
                    busy=False,
                    detail=None,
                )
                self.signals.fire(job.job_id)
                return
            await self.decline(job, slot, f"invalid accept: {problem}")
        elif isinstance(answer, Decline) and answer.busy:
            await self._busy(job, slot, answer.reason)
        elif isinstance(answer, Decline):
            await self.decline(job, slot, f"declined: {answer.reason}")
        elif answer.busy:
            await self._busy(job, slot, answer.message)
        else:
            await self.decline(job, slot, f"offer not answered: {_refusal(answer)}")

    async def _busy(self, job: JobRecord, slot: ProviderSlot, reason: str) -> None:
        self.book.mark_busy(slot.address)
        await self.store.update_slot(
            job.job_id,
            slot.idx,
            only_if=frozenset({P.OFFERED, P.ACCEPTED}),
            state=P.OFFERED,
            busy=True,
            accept_sig=None,
            accept_expiry=None,
            detail=f"waiting: provider busy: {reason}"[:MAX_REASON_CHARS],
        )

    async def decline(self, job: JobRecord, slot: ProviderSlot, reason: str) -> None:
        """Give the seat back; the driver plans another provider for it."""
        if await self.store.decline_slot(
            job.job_id, slot.idx, slot.address, reason[:MAX_REASON_CHARS]
        ):
            log.info("job %s: %s: seat %d %s", job.job_id[:18], slot.address, slot.idx, reason)
            self.signals.fire(job.job_id)


def _refusal(refusal: Refusal) -> str:
    return f"{refusal.code}: {refusal.message}"
