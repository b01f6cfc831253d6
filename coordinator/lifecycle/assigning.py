"""Choosing providers for a job, getting their consent and recording them on chain,
idempotently.

The plan (slots in state ``offered`` plus the match's explanation) is persisted first; each
planned seat is then offered to its provider (:mod:`coordinator.lifecycle.offers`), and once every
seat waiting to go on chain holds a valid consent the ``assign`` transaction is sent with
those offers. Before sending, the chain's seats are read: seats that already landed (the
receipt was lost, or the coordinator restarted) are adopted instead of sent twice. The same
path appends replacements, tie-breakers and spot-checkers to a job's seats (the contract
allows up to ``redundancy + 2`` seats, appended in order). A seat given back (its provider
declined) leaves a gap that the next plan fills, so seat indices stay contiguous.

Planning holds the chosen providers' job slots (:mod:`coordinator.matching.capacity`) under one
lock across jobs, so concurrent jobs never plan onto the same last free slot. A new job is
matched on free job slots first; when there are none it queues at once behind the running
jobs of busy providers, at most :data:`~coordinator.matching.capacity.QUEUE_DEPTH` per
provider (the chain only needs the job assigned by its assign deadline, and each seat then
has its whole commit window; a provider hands back a queued job whose commit deadline
comes too close). Jobs that find neither wait in ``matching``, in the order they were
created: whenever a slot frees up, the oldest waiting jobs are matched first
(:meth:`Assigner.admit`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import trio

from contracts.errors import ContractError
from contracts.models import AcceptedSeat, Seat
from coordinator.chain.chain_io import AsyncChain
from coordinator.errors import NoCandidates
from coordinator.lifecycle.offers import Offerer, job_key
from coordinator.matching.book import ProviderBook
from coordinator.matching.capacity import QUEUE_DEPTH
from coordinator.matching.matcher import Match, Matcher
from coordinator.matching.requirements import Requirements
from coordinator.store import AsyncStore, JobRecord, ProviderSlot
from protocol.eip712 import Signature
from protocol.ids import Address, Wei, parse_address
from protocol.lifecycle import JobState, SeatState

log = logging.getLogger(__name__)

PROMISED_GAS_PER_JOB = 300_000
"""Gas a job under way may still cost this coordinator: its assign (about 70,000), a
replacement seat, and its settle (about 110,000 alone)."""
GAS_CHECK_S = 5.0
"""How long a gas-money check stands before the balance is read again."""
NOT_YET_PROMISED = frozenset({JobState.CREATED, JobState.MATCHING})


@dataclass
class Waiting:
    """A new job waiting for providers with free capacity."""

    job: JobRecord
    req: Requirements
    tried_at: int = -1  # the book's version at its last failed match
    reason: str | None = None


class Assigner:
    def __init__(
        self,
        store: AsyncStore,
        chain: AsyncChain,
        book: ProviderBook,
        matcher: Matcher,
        offerer: Offerer,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.chain = chain
        self.book = book
        self.matcher = matcher
        self.offerer = offerer
        self.observe = observe
        self.wake: Callable[[str], None] | None = None
        self.chain_now: Callable[[], float] = time.time
        self._lock = trio.Lock()
        self._waiting: dict[str, Waiting] = {}
        self._planned: dict[str, list[ProviderSlot]] = {}  # planned while their task waited
        self._gas_checked: tuple[float, str | None] = (-GAS_CHECK_S, None)
        book.capacity.on_release = self.kick

    # ------------------------------------------------------------------ admission
    def waiting(self) -> list[str]:
        """Job ids waiting for capacity, oldest first."""
        return [w.job.job_id for w in self._order()]

    def unchanged(self, job_id: str) -> bool:
        """True when the job waits and the book has not changed since it last failed to match."""
        entry = self._waiting.get(job_id)
        return entry is not None and entry.tried_at == self._try_key(entry)

    def _try_key(self, entry: Waiting) -> int:
        """What a new match attempt would differ in: the book."""
        return self.book.version

    def forget(self, job_id: str) -> None:
        self._waiting.pop(job_id, None)
        self._planned.pop(job_id, None)
        self.offerer.forget(job_id)

    def kick(self) -> None:
        """Capacity freed up: wake the oldest waiting job, whose step matches in order."""
        order = self._order()
        if order and self.wake is not None:
            self.wake(order[0].job.job_id)

    def _order(self) -> list[Waiting]:
        return sorted(self._waiting.values(), key=lambda w: (w.job.created_at, w.job.job_id))

    async def admit(self, job: JobRecord, req: Requirements) -> list[ProviderSlot] | None:
        """Plan ``job`` if capacity allows once every older waiting job had its turn.

        Returns the planned slots, or None while the job waits (its ``waiting`` says for
        what). Jobs planned on the way are woken to submit their plans.
        """
        async with self._lock:
            done = self._planned.pop(job.job_id, None)
            if done is not None:
                return done
            short = await self._short_of_gas()
            if short is not None:
                reason = f"waiting for gas money: {short}"[:1000]
                if job.waiting != reason:
                    await self.store.update_job(job.job_id, waiting=reason)
                return None
            entry = self._waiting.get(job.job_id)
            if entry is None:
                self._waiting[job.job_id] = Waiting(job, req)
            elif entry.req != req:  # more providers to leave out (they declined)
                entry.req, entry.tried_at = req, -1
            result: list[ProviderSlot] | None = None
            # Planning only takes capacity: what found nobody in this pass finds nobody for a
            # younger job with the same requirements either (a long queue costs no matches).
            failed: list[tuple[Requirements, NoCandidates]] = []
            for entry in self._order():
                job_id = entry.job.job_id
                key = self._try_key(entry)
                if entry.tried_at == key:
                    continue
                same = next((exc for r, exc in failed if r == entry.req), None)
                if same is not None:
                    entry.tried_at = key
                    await self._note_waiting(entry, same)
                    continue
                if job_id != job.job_id:
                    current = await self.store.get_job(job_id)
                    if current.state not in (JobState.CREATED, JobState.MATCHING):
                        self.forget(job_id)
                        continue
                try:
                    slots = await self._plan_or_queue(entry.job, entry.req, [])
                except NoCandidates as exc:
                    failed.append((entry.req, exc))
                    entry.tried_at = key
                    await self._note_waiting(entry, exc)
                    continue
                del self._waiting[job_id]
                if job_id == job.job_id:
                    result = slots
                else:
                    self._planned[job_id] = slots
                    if self.wake is not None:
                        self.wake(job_id)
            return result

    async def _note_waiting(self, entry: Waiting, exc: NoCandidates) -> None:
        """Record why the job still waits (when the reason changed)."""
        reason = f"waiting for providers: {exc}"
        if reason != entry.reason:
            entry.reason = reason
            await self.store.update_job(entry.job.job_id, waiting=reason[:1000])
            await self._explain_waiting(entry.job.job_id, exc)

    async def _plan_or_queue(
        self, job: JobRecord, req: Requirements, existing: list[ProviderSlot]
    ) -> list[ProviderSlot]:
        """Plan on free job slots, else queued behind busy providers' jobs (at most
        ``QUEUE_DEPTH`` each); ``NoCandidates`` from the queued attempt when neither works."""
        try:
            return await self._plan(job, replace(req, queue=0), existing)
        except NoCandidates:
            return await self._plan(job, replace(req, queue=QUEUE_DEPTH), existing)

    async def _explain_waiting(self, job_id: str, exc: NoCandidates) -> None:
        """Keep why each sampled provider is left out while the job waits (``job explain``
        shows it), replacing the previous wait's sample."""
        previous = await self.store.explanation(job_id) or []
        kept = [c for c in previous if not c.get("waiting")]
        waiting = [dict(c.to_json(), waiting=True) for c in exc.filtered]
        await self.store.save_explanation(job_id, kept + waiting)

    async def _short_of_gas(self) -> str | None:
        """Why this coordinator cannot take another job now: its balance would not pay
        for the assigns and settles of the jobs it has under way plus this one (checked
        at most every ``GAS_CHECK_S``); None when it can."""
        at, found = self._gas_checked
        if time.monotonic() - at < GAS_CHECK_S:
            return found
        counts = await self.store.count_by_state()
        under_way = sum(
            n
            for state, n in counts.items()
            if not JobState(state).final and JobState(state) not in NOT_YET_PROMISED
        )
        short = await self.chain.gas_shortfall((under_way + 1) * PROMISED_GAS_PER_JOB)
        found = None if short is None else str(short)
        if found is not None:
            log.warning("not taking new jobs: %s", found)
        self._gas_checked = (time.monotonic(), found)
        return found

    # ------------------------------------------------------------------ planning

    def match(self, req: Requirements) -> Match:
        start = time.perf_counter()
        try:
            return self.matcher.match(req)
        finally:
            if self.observe is not None:
                self.observe(time.perf_counter() - start)

    async def plan_or_queue(
        self, job: JobRecord, req: Requirements, existing: list[ProviderSlot]
    ) -> list[ProviderSlot]:
        """Like :meth:`plan`, queueing at busy providers when no job slot is free."""
        async with self._lock:
            return await self._plan_or_queue(job, req, existing)

    async def plan(
        self,
        job: JobRecord,
        req: Requirements,
        existing: list[ProviderSlot],
        *,
        replaces: int | None = None,
    ) -> list[ProviderSlot]:
        """Match ``req.count`` more providers, hold their slots, persist them as planned."""
        async with self._lock:
            return await self._plan(job, req, existing, replaces=replaces)

    async def _plan(
        self,
        job: JobRecord,
        req: Requirements,
        existing: list[ProviderSlot],
        *,
        replaces: int | None = None,
    ) -> list[ProviderSlot]:
        match = self.match(req)
        indices = free_seats(existing, len(match.chosen))
        now = time.time()
        slots = [
            ProviderSlot(
                job_id=job.job_id,
                idx=idx,
                address=Address(c.address),
                peer_id=c.peer_id,
                price=Wei(c.price),
                rate_per_hour=Wei(c.rate_per_hour),
                state=SeatState.OFFERED,
                updated_at=now,
                multiaddrs=c.multiaddrs,
                replaces=replaces,
                detail="exploration seat" if c.explored else None,
            )
            for idx, c in zip(indices, match.chosen, strict=True)
        ]
        # Held before the first await: no other plan can take these slots meanwhile.
        self.book.capacity.hold(job.job_id, [s.address for s in slots])
        try:
            previous = [
                c for c in await self.store.explanation(job.job_id) or [] if not c.get("waiting")
            ]
            explained = [dict(c.to_json(), seat_from=indices[0]) for c in match.candidates]
            await self.store.put_slots(slots)
            await self.store.save_explanation(job.job_id, previous + explained)
        except BaseException:
            self.book.capacity.sync(job.job_id, existing)
            raise
        return slots

    # ------------------------------------------------------------------ consent + chain
    async def submit(self, job: JobRecord, slots: list[ProviderSlot]) -> str | None:
        """Offer the seats not yet on chain and, once each holds a valid consent, assign them.

        Returns the hash of the assign transaction this call sent (None when it sent none:
        consent is still missing, or the seats were already on chain and were adopted).
        """
        job_id = job_key(job)
        seats = await self.chain.get_seats(job_id)
        slots = await self._adopt_if_ahead(job, slots, seats)
        pending = sorted((s for s in slots if not s.state.on_chain), key=lambda s: s.idx)
        if not pending:
            return None
        await self.offerer.gather(job, pending)
        slots = await self.store.slots(job.job_id)
        pending = sorted((s for s in slots if not s.state.on_chain), key=lambda s: s.idx)
        first = len(seats)
        now = self.chain_now()
        contiguous = [s.idx for s in pending] == list(range(first, first + len(pending)))
        if not pending or not contiguous or not all(self.offerer.usable(s, now) for s in pending):
            return None  # some seat still waits for its provider's consent (or a provider)
        offers = [offer_of(s) for s in pending]
        try:
            receipt = await self.chain.assign(job_id, offers)
        except ContractError as exc:
            # The chain may have moved (another attempt landed): adopt what it holds.
            seats = await self.chain.get_seats(job_id)
            if len(seats) >= first + len(pending):
                await self.adopt(job, slots, seats)
                return None
            await self._refused(job, pending, exc)
            raise
        await self.adopt(job, slots, await self.chain.get_seats(job_id))
        gpus = int((job.requirements or {}).get("gpus", 0))
        if gpus > 0:
            for s in pending:
                self.book.add_inflight(s.address, gpus)
        return receipt.tx_hash

    async def _refused(
        self, job: JobRecord, pending: list[ProviderSlot], exc: ContractError
    ) -> None:
        """Give back the seats a failed assign names (by provider, else by price), so the
        same transaction is not sent again; other reasons are the caller's to handle."""
        named = exc.fields.get("provider")
        price = exc.fields.get("price")
        for s in pending:
            if (named is not None and parse_address(str(named)) == parse_address(s.address)) or (
                named is None and price is not None and int(price) == s.price
            ):
                await self.offerer.decline(job, s, f"the market refused the seat: {exc}")

    async def _adopt_if_ahead(
        self, job: JobRecord, slots: list[ProviderSlot], seats: list[Seat]
    ) -> list[ProviderSlot]:
        """Adopt on-chain seats the store does not show as on chain yet."""
        by_idx = {s.idx: s for s in slots}
        if all(i in by_idx and by_idx[i].state.on_chain for i in range(len(seats))):
            return slots
        await self.adopt(job, slots, seats)
        return await self.store.slots(job.job_id)

    async def adopt(self, job: JobRecord, slots: list[ProviderSlot], seats: list[Seat]) -> None:
        """Make the stored seats agree with the chain's (the chain wins); seats still
        waiting for consent after them are kept."""
        by_idx = {s.idx: s for s in slots}
        fixed: list[ProviderSlot] = []
        for i, seat in enumerate(seats):
            price, rate, at = seat.price, seat.rate_per_hour, int(seat.assigned_at)
            slot = by_idx.get(i)
            if slot is not None and parse_address(slot.address) == parse_address(seat.provider):
                state = slot.state if slot.state.on_chain else SeatState.ASSIGNED
                if state is not slot.state or slot.assigned_at != at:
                    fixed.append(
                        replace(
                            slot,
                            state=state,
                            price=price,
                            rate_per_hour=rate,
                            assigned_at=at,
                            updated_at=time.time(),
                        )
                    )
                continue
            advert = self.book.find(seat.provider)
            fixed.append(
                ProviderSlot(
                    job_id=job.job_id,
                    idx=i,
                    address=seat.provider,
                    peer_id=advert.peer_id if advert else "",
                    state=SeatState.ASSIGNED if advert else SeatState.FAILED,
                    updated_at=time.time(),
                    multiaddrs=tuple(advert.multiaddrs) if advert else (),
                    detail=None if advert else "assigned on chain but not in the book",
                    price=price,
                    rate_per_hour=rate,
                    assigned_at=at,
                )
            )
        if fixed:
            await self.store.put_slots(fixed)


def free_seats(existing: list[ProviderSlot], count: int) -> list[int]:
    """The lowest ``count`` seat indices no slot holds (gaps left by declines first)."""
    taken = {s.idx for s in existing}
    free: list[int] = []
    idx = 0
    while len(free) < count:
        if idx not in taken:
            free.append(idx)
        idx += 1
    return free


def offer_of(slot: ProviderSlot) -> AcceptedSeat:
    """What the market's ``assign`` takes for a seat its provider accepted."""
    assert slot.accept_sig is not None and slot.accept_expiry is not None
    return AcceptedSeat(
        provider=Address(parse_address(slot.address)),
        price=Wei(slot.price),
        rate_per_hour=Wei(slot.rate_per_hour),
        expiry=slot.accept_expiry,
        signature=Signature.from_bytes(bytes.fromhex(slot.accept_sig[2:])),
    )
