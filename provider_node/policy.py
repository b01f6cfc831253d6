"""The provider's consent policy: which job offers it signs an ``Accept`` for.

An ``Accept`` lets the market lock ``stakeFactor x price`` of this provider's stake until
the job ends, so the provider signs one only when every rule below holds (checked in this
order; the first that fails is the ``Decline`` reason):

* the offer's coordinator is allow-listed (``PROVIDER_COORDINATORS``; default: the one
  coordinator at ``PROVIDER_COORDINATOR_MULTIADDR``) and is the coordinator the job's
  on-chain terms name;
* the job is open (or already has seats) on chain, the offered spec is its spec, this
  provider has no seat in it yet, and the seat is not taken yet and exists
  (``< redundancy + 2``);
* ``price <= priceCap`` and ``ratePerHour >= PROVIDER_MIN_RATE_PER_GPU_HOUR x gpus`` for a
  GPU job, ``>= PROVIDER_MIN_RATE_PER_CPU_HOUR`` for a job asking for no GPU (defaults: the
  advertised prices per GPU-hour and per CPU-hour);
* the consent expires in the future and at most ``MAX_OFFER_EXPIRY_S`` ahead;
* ``settleDeadline - now <= PROVIDER_MAX_LOCK_S`` (default 7 days);
* ``locked + pending + stakeFactor x price <= min(PROVIDER_MAX_LOCKED_STAKE, stake)``
  (default: all stake; so the lock always fits in the free stake).

"pending" is the stake promised by Accepts this daemon signed that the chain has not used
yet (:class:`AcceptBook`); they also reserve a job slot until they expire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.models import JobInfo, JobStatus, ProviderInfo
from protocol.errors import ConfigError, GpuMarketError
from protocol.identity import address_from_peer_id
from protocol.ids import Address, JobId, Wei, from_wei
from protocol.ipfs.cid import result_digest
from protocol.messages import JobOffer
from provider_node.coordinator_link import coordinator_peer
from provider_node.settings import ProviderSettings

MAX_OFFER_EXPIRY_S = 600
"""An Accept is valid on chain until its expiry; a later one is refused. Twice the
coordinator's offer lifetime (300 s), so the two sides' estimates of chain time (block time
lags on an idle chain) never make a fresh offer look too long-lived."""
ASSIGNMENT_GRACE_S = 120
"""How long after its expiry an accepted offer still waits for its Assignment (the assign
transaction may be mined right at the expiry, and the Assignment follows the receipt)."""
MAX_OPEN_ACCEPTS = 64


@dataclass(frozen=True)
class ConsentPolicy:
    """The bounds within which this provider consents to seats; see the module doc."""

    coordinators: frozenset[Address]
    min_rate_per_gpu_hour: Wei
    min_rate_per_cpu_hour: Wei
    max_lock_s: int
    max_locked_stake: Wei | None = None
    """None: all the provider's stake."""
    max_offer_expiry_s: int = MAX_OFFER_EXPIRY_S

    def min_rate(self, gpus: int) -> int:
        """The lowest ``ratePerHour`` for a seat of ``gpus`` GPUs (0: a CPU seat)."""
        return self.min_rate_per_gpu_hour * gpus if gpus else self.min_rate_per_cpu_hour

    def locked_cap(self, stake: int) -> int:
        cap = self.max_locked_stake
        return stake if cap is None else min(cap, stake)

    def view(self, stake: int) -> dict[str, Any]:
        """The policy as JSON-ready values for a provider holding ``stake``; amounts in token
        units as text, like the rest of ``provider status``."""
        return {
            "coordinators": sorted(self.coordinators),
            "min_rate_per_gpu_hour": str(from_wei(self.min_rate_per_gpu_hour)),
            "min_rate_per_cpu_hour": str(from_wei(self.min_rate_per_cpu_hour)),
            "max_lock_s": self.max_lock_s,
            "max_locked_stake": str(from_wei(self.locked_cap(stake))),
            "max_locked_stake_is_all_stake": self.max_locked_stake is None,
        }


def consent_policy(settings: ProviderSettings) -> ConsentPolicy:
    """The policy the settings describe, defaults filled in."""
    coordinators = set(settings.coordinators)
    if not coordinators and settings.coordinator_multiaddr:
        peer = coordinator_peer(settings.coordinator_multiaddr)
        try:
            coordinators.add(address_from_peer_id(peer))
        except GpuMarketError as exc:
            raise ConfigError(
                f"PROVIDER_COORDINATOR_MULTIADDR: no address can be derived from {peer} "
                f"({exc}); set PROVIDER_COORDINATORS"
            ) from exc
    rate, cpu_rate = settings.min_rate_per_gpu_hour, settings.min_rate_per_cpu_hour
    cap = settings.max_locked_stake
    return ConsentPolicy(
        coordinators=frozenset(coordinators),
        min_rate_per_gpu_hour=Wei(settings.price_wei if rate is None else rate),
        min_rate_per_cpu_hour=Wei(settings.cpu_price_wei if cpu_rate is None else cpu_rate),
        max_lock_s=settings.max_lock_s,
        max_locked_stake=None if cap is None else Wei(cap),
    )


@dataclass(frozen=True)
class OfferFacts:
    """What the chain says when an offer is checked."""

    now: int
    job: JobInfo
    stake: ProviderInfo
    stake_factor: int
    pending_lock: int
    """Stake promised by other live Accepts, not yet locked on chain."""
    latest: int | None = None
    """The latest the next block's time can plausibly be (block time or this machine's clock,
    whichever is later: an idle devnet's last block can be minutes old). An expiry is judged
    too far ahead only against this, and expired only against ``now`` (block time)."""


def decline_reason(policy: ConsentPolicy, offer: JobOffer, facts: OfferFacts) -> str | None:
    """Why ``offer`` falls outside ``policy`` (the first rule it breaks), or None."""
    job, terms, now = facts.job, facts.job.terms, facts.now
    if offer.coordinator not in policy.coordinators:
        return f"coordinator {offer.coordinator} is not in this provider's PROVIDER_COORDINATORS"
    if terms.coordinator != offer.coordinator:
        return f"the chain names {terms.coordinator} as this job's coordinator, not the sender"
    if job.status not in (JobStatus.OPEN, JobStatus.ASSIGNED):
        return f"the job is {job.status.name.lower()} on chain"
    if result_digest(offer.spec_cid) != job.spec_digest:
        return f"spec {offer.spec_cid} is not the job's spec on chain ({job.spec_cid})"
    if any(s.provider == offer.provider for s in job.seats):
        return "the chain seats this provider in this job already"
    if not len(job.seats) <= offer.seat < terms.max_seats:
        return f"seat {offer.seat} is not free (the job has {len(job.seats)} of {terms.max_seats})"
    if offer.price > terms.price_cap:
        return f"price {offer.price} is above the job's cap {terms.price_cap}"
    if offer.rate_per_hour < policy.min_rate(offer.gpus):
        return (
            f"rate {offer.rate_per_hour} per hour is below this provider's minimum "
            f"{policy.min_rate(offer.gpus)} for "
            + (f"{offer.gpus} GPU(s)" if offer.gpus else "a CPU seat")
        )
    if offer.expiry <= now:
        return f"the offer expired at {offer.expiry} (now {now})"
    latest = max(now, facts.latest or now)
    if offer.expiry > latest + policy.max_offer_expiry_s:
        return f"the offer's expiry lies more than {policy.max_offer_expiry_s} s ahead"
    if terms.settle_deadline - now > policy.max_lock_s:
        return (
            f"the stake would stay locked {terms.settle_deadline - now} s, "
            f"more than this provider's maximum {policy.max_lock_s} s"
        )
    lock = facts.stake_factor * offer.price
    locked = facts.stake.locked + facts.pending_lock
    cap = policy.locked_cap(facts.stake.stake)
    if locked + lock > cap:  # with the cap at most the stake, this also keeps lock <= free
        return f"locking {lock} more would bring locked stake to {locked + lock}, above {cap}"
    return None


@dataclass(frozen=True)
class Accepted:
    """An Accept this daemon signed, kept until its Assignment arrives or it lapses."""

    job_id: JobId
    seat: int
    price: Wei
    rate_per_hour: Wei
    expiry: int
    lock: int
    terms_hash: bytes

    def same_offer(self, offer: JobOffer) -> bool:
        return (
            self.seat == offer.seat
            and self.price == offer.price
            and self.rate_per_hour == offer.rate_per_hour
            and self.expiry == offer.expiry
        )


class AcceptBook:
    """Bounded record of signed Accepts, one per job: what the next Assignment is checked
    against, and the slots and stake they reserve meanwhile."""

    def __init__(self, max_entries: int = MAX_OPEN_ACCEPTS, grace_s: int = ASSIGNMENT_GRACE_S):
        self.max_entries = max_entries
        self.grace_s = grace_s
        self._entries: dict[JobId, Accepted] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def prune(self, now: int) -> None:
        """Forget accepts whose Assignment can no longer come."""
        for job_id, entry in list(self._entries.items()):
            if entry.expiry + self.grace_s < now:
                del self._entries[job_id]

    def get(self, job_id: JobId) -> Accepted | None:
        return self._entries.get(job_id)

    def full(self, job_id: JobId) -> bool:
        return job_id not in self._entries and len(self._entries) >= self.max_entries

    def add(self, entry: Accepted) -> None:
        """Record ``entry`` (replacing an earlier accept for the same job)."""
        if self.full(entry.job_id):
            raise ValueError("the accept book is full; prune it or decline")
        self._entries[entry.job_id] = entry

    def pop(self, job_id: JobId) -> Accepted | None:
        return self._entries.pop(job_id, None)

    def pending_lock(self, excluding: JobId | None = None) -> int:
        return sum(e.lock for j, e in self._entries.items() if j != excluding)

    def reserved(self, excluding: JobId | None = None) -> int:
        """Job slots held for accepted offers."""
        return sum(1 for j in self._entries if j != excluding)
