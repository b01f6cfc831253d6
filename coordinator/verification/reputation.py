"""Provider reputation as the coordinator keeps it: proofs.reputation per provider, persisted.

**What moves it.** Every verified outcome of a seat (:class:`proofs.reputation.Verified`),
read from the seat's row once its job ended (:func:`recordable`): paid beside another paid
seat is a success (paid alone, an unchecked primary, is not verified and counts nothing),
slashed a slash, a commitment never (validly) revealed is withheld, and a seat that failed
before committing counts by whose fault it was (``ProviderSlot.failure``, set where the seat
failed): a timeout (no commitment by its commit deadline, went silent), a fault (its own
side: a refused assignment, a sandbox error, a hand-back), or, for a report that the job's
own code or data failed, nothing, unless another seat of the job was paid (then not every
provider failed the same way, and it is a fault). A job whose code fails everywhere is
committed as the canonical failure output and paid: a success. Everything else (a seat
that revealed and was released, a seat of an aborted job that did not fail) is neutral.

**Exactly once.** :meth:`ReputationBook.record_job` is the one entry point; it runs from
the driver's terminal step, right after this coordinator's settlement, and for jobs the
chain ended (the watcher wakes them; on start the service wakes every ended job with
seats not counted yet). Each seat is counted in one store transaction that marks the seat
(``reputation_recorded``) and writes the reputation, so repeated steps, concurrent steps
and restarts never count a seat twice. A failed job that some seat committed to is
counted once the chain decides it (finalized or reclaimed): a seat may still reveal.

**Seeding.** This coordinator's own stored rows are the primary source and are never
rebuilt. A provider without a row starts from the settlements of trusted coordinators
(this one and ``COORDINATOR_TRUSTED_COORDINATORS``), replayed from the chain's
``JobSettled`` and ``ProviderSlashed`` events
(:mod:`coordinator.verification.reputation_seed`), capped
like any undated evidence; never from the registry's lifetime counters, which any
self-dealing coordinator can farm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from coordinator.errors import CoordinatorError
from coordinator.matching.book import ProviderBook
from coordinator.store import AsyncStore, JobRecord, ProviderSlot, ReputationRecord, SeatFailure
from proofs.policy import ProviderStanding
from proofs.reputation import Reputation, ReputationParams, Verified
from protocol.lifecycle import JobState, Outcome, SeatState

ESTABLISHED_EVIDENCE = 20.0
COUNTS: dict[Verified, str] = {
    Verified.SUCCESS: "successes",
    Verified.SLASHED: "slashes",
    Verified.FAULT: "faults",
    Verified.TIMEOUT: "timeouts",
    Verified.WITHHELD: "withheld",
}
"""The ``ReputationRecord`` field counting each kind of outcome."""


class UnknownProvider(CoordinatorError):
    """This coordinator holds no reputation for the provider (404 on the API)."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(f"no standing for provider {address}: no verified outcome known")


class SeedSource(Protocol):
    """Trusted settlements per provider (see :mod:`coordinator.verification.reputation_seed`)."""

    def counts(self, address: str) -> tuple[int, int]:
        """(successes, slashes) of ``address`` in trusted coordinators' settled jobs."""
        ...


def recordable(job: JobRecord) -> bool:
    """Whether every seat's outcome is decided: the chain ended the job, or it was aborted
    (nobody committed). A failed job some seat committed to waits for the chain."""
    return job.state.final or (job.state is JobState.FAILED and job.abort_tx is not None)


def verified_outcome(slot: ProviderSlot, *, others_paid: bool) -> Verified | None:
    """The verified outcome of one seat of an ended job; None when it is neutral."""
    if not slot.state.on_chain:
        return None
    if slot.outcome is Outcome.PAID:
        # Paid alone (an unchecked primary) is not verified: nobody re-ran its job.
        return Verified.SUCCESS if others_paid else None
    if slot.outcome is Outcome.SLASHED:
        return Verified.SLASHED
    if slot.committed:
        if slot.state is SeatState.REVEALED or slot.onchain_revealed:
            return None  # opened its commitment; released without a verdict on it
        return Verified.WITHHELD
    if slot.state not in (SeatState.FAILED, SeatState.REPLACED):
        return None
    if slot.failure is SeatFailure.TIMEOUT:
        return Verified.TIMEOUT
    if slot.failure is SeatFailure.FAULT:
        return Verified.FAULT
    if slot.failure is SeatFailure.JOB and others_paid:
        return Verified.FAULT  # the job ran elsewhere: its code did not fail everywhere
    return None


@dataclass(frozen=True)
class Standing:
    """A provider's standing as ``GET /providers/{address}/standing`` shows it."""

    record: ReputationRecord
    alpha: float
    beta: float
    mean: float
    lower_bound: float
    evidence: float
    established: bool


class ReputationBook:
    """Every provider's reputation: a cache of the stored rows, written through."""

    def __init__(self, clock: Callable[[], float], params: ReputationParams | None = None) -> None:
        self.clock = clock
        self.params = params or ReputationParams()
        self.history: SeedSource | None = None
        """Where a provider without a row starts from; None: the prior."""
        self._by_address: dict[str, ReputationRecord] = {}

    def load(self, stored: Iterable[ReputationRecord]) -> None:
        """Take stored reputations as known."""
        for record in stored:
            self._by_address[record.address] = record

    def known(self, address: str) -> bool:
        return address in self._by_address

    def seed(self, address: str) -> ReputationRecord:
        """Where ``address`` starts: trusted settlements (capped, undated), else the prior."""
        successes, slashes = self.history.counts(address) if self.history else (0, 0)
        rep = Reputation.from_counters(successes, slashes, self.clock(), self.params)
        return ReputationRecord(
            address, rep.alpha, rep.beta, rep.updated_at, successes=successes, slashes=slashes
        )

    def _posterior(self, record: ReputationRecord) -> Reputation:
        return Reputation(record.alpha, record.beta, record.updated_at, self.params)

    def get(self, address: str) -> Reputation:
        record = self._by_address.get(address)
        if record is None:
            return Reputation.fresh(self.clock(), self.params)
        return self._posterior(record)

    async def ensure(self, store: AsyncStore, book: ProviderBook, address: str) -> None:
        """Give a provider first seen its seeded row (stored unless one exists), and push
        its standing to the matcher."""
        if address not in self._by_address:
            self._by_address[address] = await store.seed_reputation(self.seed(address))
        self._push(book, address)

    def _push(self, book: ProviderBook, address: str) -> None:
        book.set_reputation(address, self.lower_bound(address), self.newcomer(address))

    async def record(
        self, store: AsyncStore, book: ProviderBook, slot: ProviderSlot, outcome: Verified | None
    ) -> bool:
        """Count one seat's outcome (None: neutral, only marked) exactly once: persisted
        together with the seat's mark, then pushed to the matcher. False if counted before."""
        address = slot.address
        seed = self._by_address.get(address) or self.seed(address)
        change = None if outcome is None else self._change(seed, outcome, self.clock())
        new = await store.record_outcome(slot.job_id, slot.idx, address, change)
        if new is None:
            return False
        self._by_address[address] = new
        self._push(book, address)
        return True

    def _change(
        self, seed: ReputationRecord, outcome: Verified, now: float
    ) -> Callable[[ReputationRecord | None], ReputationRecord]:
        """The update the store applies to the provider's stored row (``seed`` if none)."""
        field = COUNTS[outcome]

        def change(stored: ReputationRecord | None) -> ReputationRecord:
            base = stored or seed
            rep = self._posterior(base).record_outcome(now, outcome)
            return replace(
                base,
                alpha=rep.alpha,
                beta=rep.beta,
                updated_at=rep.updated_at,
                **{field: getattr(base, field) + 1},
            )

        return change

    async def record_job(
        self, store: AsyncStore, book: ProviderBook, job: JobRecord
    ) -> dict[int, Verified]:
        """Count the outcome of every seat of an ended job not counted yet; returns what was
        counted now, by seat. Nothing while the job's outcome is still open."""
        if not recordable(job):
            return {}
        slots = await store.slots(job.job_id)
        paid = {s.idx for s in slots if s.outcome is Outcome.PAID}
        counted: dict[int, Verified] = {}
        for slot in slots:
            if slot.reputation_recorded or not slot.state.on_chain:
                continue
            outcome = verified_outcome(slot, others_paid=bool(paid - {slot.idx}))
            if await self.record(store, book, slot, outcome) and outcome is not None:
                counted[slot.idx] = outcome
        return counted

    def lower_bound(self, address: str) -> float:
        return self.get(address).lower_bound(self.clock())

    def newcomer(self, address: str) -> bool:
        return self.get(address).evidence(self.clock()) < ESTABLISHED_EVIDENCE

    def standing(self, address: str, slashable_stake: int) -> ProviderStanding:
        rep = self.get(address)
        now = self.clock()
        record = self._by_address.get(address)
        return ProviderStanding(
            slashable_stake=slashable_stake,
            verified_jobs=int(rep.evidence(now)),
            slashes=0 if record is None else record.slashes,
            reputation_lcb=rep.lower_bound(now),
        )


def standing_of(
    record: ReputationRecord, now: float, params: ReputationParams | None = None
) -> Standing:
    """A stored reputation as the provider is shown it, decayed to ``now``."""
    rep = Reputation(record.alpha, record.beta, record.updated_at, params or ReputationParams())
    decayed = rep.at(now)
    evidence = rep.evidence(now)
    return Standing(
        record=record,
        alpha=decayed.alpha,
        beta=decayed.beta,
        mean=rep.mean(now),
        lower_bound=rep.lower_bound(now),
        evidence=evidence,
        established=evidence >= ESTABLISHED_EVIDENCE,
    )


async def standing(store: AsyncStore, address: str, now: float) -> Standing:
    """What this coordinator holds on ``address``; raises :class:`UnknownProvider`."""
    record = await store.reputation(address)
    if record is None:
        raise UnknownProvider(address)
    return standing_of(record, now)
