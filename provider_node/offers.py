"""Answering job offers: a signed ``Accept`` within the consent policy, else a ``Decline``.

The server has already checked the envelope (signed by the offer's coordinator, addressed
to this provider). :class:`OfferDesk` refuses a coordinator outside the allow-list before
any chain read, declines as busy when held jobs (running or queued) plus
accepted-but-unassigned offers fill every slot and the queue, reads the job's terms, seats
and spec from the chain (never from the offer), checks them and this provider's stake
against :mod:`provider_node.policy`, and signs the EIP-712 ``Accept`` over the on-chain
``termsHash``. Each Accept is kept in the :class:`~provider_node.policy.AcceptBook` until
its Assignment arrives or it lapses; the same offer asked again gets the same Accept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from contracts.errors import JobNotFound
from protocol import eip712
from protocol.identity import Identity
from protocol.ids import Address, JobId, Wei
from protocol.messages import Accept, Decline, JobOffer
from protocol.registry import MAX_TEXT_CHARS
from provider_node.policy import (
    AcceptBook,
    Accepted,
    ConsentPolicy,
    OfferFacts,
    decline_reason,
)
from provider_node.staking import ProviderChain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Load:
    """This provider's state when an offer arrives."""

    running: int
    """Jobs held here: running, or queued for a slot."""
    max_concurrent: int
    gpus_total: int
    max_queued: int = 0
    """Jobs that may wait for a slot beyond ``max_concurrent``."""
    accepting: bool = True
    holds_job: bool = False
    """A record of this job exists here already (it was assigned before)."""


class OfferDesk:
    """Turns JobOffers into Accepts or Declines; see the module doc."""

    def __init__(
        self,
        identity: Identity,
        chain: ProviderChain,
        domain: eip712.Eip712Domain,
        policy: ConsentPolicy,
        *,
        now: Callable[[], int] | None = None,
        book: AcceptBook | None = None,
    ) -> None:
        self.identity = identity
        self.chain = chain
        self.domain = domain
        self.policy = policy
        self.now = now or (lambda: chain.now())
        self.book = book or AcceptBook()
        self._stake_factor: int | None = None

    @property
    def address(self) -> Address:
        return Address(self.identity.address)

    async def answer(self, offer: JobOffer, load: Load) -> Accept | Decline:
        job = offer.job_id
        if offer.coordinator not in self.policy.coordinators:
            return self._decline(offer, f"coordinator {offer.coordinator} is not allow-listed")
        if load.holds_job:
            return self._decline(offer, "this provider holds a seat of the job already")
        if not load.accepting:
            return self._decline(offer, "shutting down", busy=True)
        if offer.gpus > load.gpus_total:
            have = load.gpus_total
            return self._decline(offer, f"needs {offer.gpus} GPUs, this provider has {have}")
        now = await trio.to_thread.run_sync(self.now)
        self.book.prune(now)
        previous = self.book.get(job)
        if previous is not None and previous.same_offer(offer) and offer.expiry > now:
            return self._accept(offer, previous.terms_hash)  # a retried offer
        slots = load.running + self.book.reserved(excluding=job)
        if slots >= load.max_concurrent + load.max_queued:
            taken = f"all {load.max_concurrent} job slots taken"
            if load.max_queued:
                taken += f" and {load.max_queued} queued"
            return self._decline(offer, taken, busy=True)
        if self.book.full(job):
            return self._decline(offer, "too many offers accepted and not assigned", busy=True)
        try:
            info = await trio.to_thread.run_sync(self.chain.get_job, job)
        except JobNotFound:
            return self._decline(offer, "no such job on chain")
        stake = await trio.to_thread.run_sync(self.chain.provider_info, self.address)
        factor = await self._factor()
        pending = self.book.pending_lock(excluding=job)
        facts = OfferFacts(now, info, stake, factor, pending, latest=int(time.time()))
        reason = decline_reason(self.policy, offer, facts)
        if reason is not None:
            return self._decline(offer, reason)
        terms_hash = info.terms.terms_hash()
        accept = self._accept(offer, terms_hash)
        self.book.add(
            Accepted(
                job_id=job,
                seat=offer.seat,
                price=offer.price,
                rate_per_hour=offer.rate_per_hour,
                expiry=offer.expiry,
                lock=factor * offer.price,
                terms_hash=terms_hash,
            )
        )
        log.info(
            "job 0x%s: accepted seat %d at %d (rate %d/h) from %s",
            job.hex(),
            offer.seat,
            offer.price,
            offer.rate_per_hour,
            offer.coordinator,
        )
        return accept

    async def _factor(self) -> int:
        if self._stake_factor is None:  # immutable on chain: read once
            params = await trio.to_thread.run_sync(self.chain.market_params)
            self._stake_factor = params.stake_factor
        return self._stake_factor

    def _accept(self, offer: JobOffer, terms_hash: bytes) -> Accept:
        signature = eip712.sign_accept(
            self.identity.private_key,
            self.domain,
            offer.job_id,
            self.address,
            offer.seat,
            offer.price,
            offer.rate_per_hour,
            terms_hash,
            offer.expiry,
        )
        return Accept(
            job_id=offer.job_id,
            provider=self.address,
            seat=offer.seat,
            price=Wei(offer.price),
            rate_per_hour=Wei(offer.rate_per_hour),
            expiry=offer.expiry,
            signature=signature,
        )

    def _decline(self, offer: JobOffer, reason: str, *, busy: bool = False) -> Decline:
        log.info("job 0x%s: declined the offer: %s", offer.job_id.hex(), reason)
        return Decline(
            job_id=JobId(offer.job_id),
            provider=self.address,
            reason=reason[:MAX_TEXT_CHARS],
            busy=busy,
        )
