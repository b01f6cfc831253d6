"""The in-memory twin of TestUSD + JobMarket: the same state, rules, errors and events.

:class:`FakeWorld` holds one chain's state and implements every contract function as a
method taking the caller first, like ``msg.sender``; it is layered like the contract:
``FakeLedger`` (clock, events, token, credits) -> ``FakeRegistry`` (providers, stake,
coordinator bonds) -> ``FakeJobs`` (job records, the quorum rule, payouts) -> ``FakeWorld``
(the market's functions). Each function checks everything before changing anything (a
revert changes nothing), raises the ``contracts.errors`` class the contract raises with the
same fields, and emits events with the contract's names and arguments. A write mines one
block one second after the previous one; :meth:`FakeWorld.advance` and
:meth:`FakeWorld.mine_next_at` move time. ``contracts.fake.FakeChain`` is the client over
it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eth_account.signers.local import LocalAccount

from contracts import errors as E
from contracts.deploy import (
    DEFAULT_COORDINATOR_UNBOND_DELAY_S,
    DEFAULT_MIN_COORDINATOR_BOND,
    DEFAULT_MIN_PRICE,
    DEFAULT_MIN_STAKE,
    DEFAULT_STAKE_FACTOR,
    DEFAULT_UNBONDING_DELAY_S,
)
from contracts.fake_jobs import FakeJobs, Job, SeatEntry
from contracts.fake_ledger import FAKE_MARKET, FAKE_TOKEN, Account, selector, signed
from contracts.fake_registry import UINT56_MAX
from contracts.models import (
    MAX_BATCH,
    MAX_JOB_DURATION_S,
    MAX_REDUNDANCY,
    MAX_SPEC_CID_LENGTH,
    AcceptedSeat,
    CompareMode,
    JobRequest,
    JobStatus,
    JobTerms,
    Seat,
    Settlement,
    escrow_of,
)
from contracts.rules import decide, job_id_for
from protocol import eip712
from protocol.ids import Address, JobId, parse_address

if TYPE_CHECKING:
    from contracts.fake import FakeChain

__all__ = ["FAKE_MARKET", "FAKE_TOKEN", "FakeWorld"]

MAX_STAKE_FACTOR = 100


class FakeWorld(FakeJobs):
    """One in-memory chain with the token and the market deployed (constructor checks as
    the contract's: ``InvalidConstructorArgument``)."""

    def __init__(
        self,
        *,
        chain_id: int = 31337,
        min_stake: int = DEFAULT_MIN_STAKE,
        unbonding_delay: int = DEFAULT_UNBONDING_DELAY_S,
        stake_factor: int = DEFAULT_STAKE_FACTOR,
        min_price: int = DEFAULT_MIN_PRICE,
        min_coordinator_bond: int = DEFAULT_MIN_COORDINATOR_BOND,
        coordinator_unbond_delay: int = DEFAULT_COORDINATOR_UNBOND_DELAY_S,
        start_time: int = 1_700_000_000,
        minter: str | None = None,
    ) -> None:
        for name, bad in (
            ("minStake", min_stake == 0),
            ("stakeFactor", not 0 < stake_factor <= MAX_STAKE_FACTOR),
            ("minPrice", min_price == 0),
            ("minCoordinatorBond", min_coordinator_bond == 0),
            ("coordinatorUnbondDelay", coordinator_unbond_delay <= MAX_JOB_DURATION_S),
        ):
            if bad:
                raise E.InvalidConstructorArgument(name=name)
        super().__init__(
            min_stake=min_stake,
            unbonding_delay=unbonding_delay,
            stake_factor=stake_factor,
            min_coordinator_bond=min_coordinator_bond,
            coordinator_unbond_delay=coordinator_unbond_delay,
            chain_id=chain_id,
            start_time=start_time,
            minter=minter,
        )
        self.min_price = min_price

    def client(self, account: LocalAccount | str) -> FakeChain:
        """A client acting for ``account`` (a LocalAccount, a private key or an address;
        with an address only, nothing can be signed)."""
        from contracts.fake import FakeChain

        return FakeChain(self, account)

    # ------------------------------------------------------------ market: jobs
    def create_job(self, sender: Address, r: JobRequest) -> tuple[JobId, str]:
        self._check_request(r)
        escrow = escrow_of(r.redundancy, r.price_cap, r.fee)
        self._check_pull(sender, escrow, permit=True)
        job_id = job_id_for(sender, self.account(sender).nonce)
        tx = self._mine(sender)
        self.accounts.setdefault(sender, Account()).nonce += 1
        terms = JobTerms(
            requester=sender,
            coordinator=parse_address(r.coordinator),
            redundancy=r.redundancy,
            mode=CompareMode(r.mode),
            price_cap=r.price_cap,
            fee=r.fee,
            timeout_ms=r.timeout_ms,
            assign_deadline=r.assign_deadline,
            commit_window=r.commit_window,
            reveal_window=r.reveal_window,
            spare_deadline=r.spare_deadline,
            settle_deadline=r.settle_deadline,
        )
        self.jobs[bytes(job_id)] = Job(terms, r.spec_digest, r.spec_cid, self.block)
        self._emit(
            "market",
            "JobCreated",
            jobId=bytes(job_id),
            requester=sender,
            coordinator=terms.coordinator,
            specDigest=r.spec_digest,
            specCid=r.spec_cid.encode(),
            redundancy=terms.redundancy,
            mode=int(terms.mode),
            priceCap=terms.price_cap,
            fee=terms.fee,
            timeoutMs=terms.timeout_ms,
            assignDeadline=terms.assign_deadline,
            commitWindow=terms.commit_window,
            revealWindow=terms.reveal_window,
            spareDeadline=terms.spare_deadline,
            settleDeadline=terms.settle_deadline,
            escrow=escrow,
        )
        self._permit(sender, escrow)
        self._pull(sender, escrow)
        return job_id, tx

    def _check_request(self, r: JobRequest) -> None:
        now = self.next_time
        if not 1 <= r.redundancy <= MAX_REDUNDANCY:
            raise E.InvalidRedundancy(redundancy=r.redundancy)
        if int(r.mode) > CompareMode.TOLERANCE:
            raise E.InvalidMode(mode=int(r.mode))
        if r.price_cap < self.min_price or r.price_cap * self.stake_factor > UINT56_MAX:
            raise E.InvalidPriceCap(priceCap=r.price_cap)
        coordinator = parse_address(r.coordinator)
        if self.coordinator(coordinator).bond < self.min_coordinator_bond:
            raise E.CoordinatorNotBonded(coordinator=coordinator)
        cid_length = len(r.spec_cid.encode())
        if cid_length == 0 or cid_length > MAX_SPEC_CID_LENGTH:
            raise E.InvalidSpecCid(length=cid_length)
        if r.timeout_ms == 0 or r.timeout_ms > r.commit_window * 1000:
            raise E.InvalidTimeout(timeoutMs=r.timeout_ms)
        if (
            r.assign_deadline <= now
            or r.spare_deadline < r.assign_deadline
            or r.commit_window == 0
            or r.reveal_window == 0
            or r.spare_deadline + r.commit_window + r.reveal_window > r.settle_deadline
            or r.settle_deadline > now + MAX_JOB_DURATION_S
        ):
            raise E.InvalidDeadlines()

    def cancel(self, sender: Address, job_id: bytes) -> str:
        job = self.job(job_id, JobStatus.OPEN)
        if sender != job.terms.requester:
            raise E.NotRequester(jobId=bytes(job_id), caller=sender)
        tx = self._mine(sender)
        job.status = JobStatus.CANCELLED
        self._credit(job.terms.requester, job.terms.escrow)
        self._emit("market", "JobCancelled", jobId=bytes(job_id), refund=job.terms.escrow)
        return tx

    def reclaim(self, sender: Address, job_id: bytes, seats: list[Seat]) -> str:
        job = self._load(job_id, seats, JobStatus.OPEN, JobStatus.ASSIGNED)
        t = job.terms
        if sender != t.requester:
            raise E.NotRequester(jobId=bytes(job_id), caller=sender)
        deadline = t.assign_deadline if job.status == JobStatus.OPEN else t.settle_deadline
        if self.next_time <= deadline:
            raise E.ReclaimTooEarly(jobId=bytes(job_id), deadline=deadline)
        if seats and decide(self._on_chain_tally(job_id, job), t.redundancy).decided:
            raise E.MajorityExists(jobId=bytes(job_id))
        tx = self._mine(sender)
        job.status = JobStatus.RECLAIMED
        self._release(job.seats)
        self._credit(t.requester, t.escrow)
        self._emit("market", "JobReclaimed", jobId=bytes(job_id), refund=t.escrow)
        return tx

    # ------------------------------------------------------ market: coordinator
    def assign(
        self, sender: Address, job_id: bytes, seats: list[Seat], offers: list[AcceptedSeat]
    ) -> str:
        job = self._load(job_id, seats, JobStatus.OPEN, JobStatus.ASSIGNED)
        t = job.terms
        jid = bytes(job_id)
        if sender != t.coordinator:
            raise E.NotCoordinator(jobId=jid, caller=sender)
        if not offers:
            raise E.NothingToAssign(jobId=jid)
        already, n = len(seats), len(seats) + len(offers)
        if n > t.max_seats:
            raise E.TooManyProviders(count=n, max=t.max_seats)
        now = self.next_time
        if job.status == JobStatus.OPEN:
            if now > t.assign_deadline:
                raise E.AssignDeadlinePassed(jobId=jid, deadline=t.assign_deadline)
        else:
            deadline = min(t.reveal_open(seats), t.spare_deadline)
            if now > deadline:
                raise E.SpareDeadlinePassed(jobId=jid, deadline=deadline)
        terms_hash = t.terms_hash()
        for i, o in enumerate(offers, start=already):
            self._check_offer(jid, t.price_cap, o, i, terms_hash, now)
        providers = [s.provider for s in seats] + [parse_address(o.provider) for o in offers]
        locks = [0] * already + [o.price * self.stake_factor for o in offers]
        self._check_lock(providers, locks, already)
        tx = self._mine(sender)
        for i, o in enumerate(offers, start=already):
            seat = Seat(parse_address(o.provider), o.price, o.rate_per_hour, self.time)
            job.seats.append(seat)
            self._emit(
                "market",
                "ProviderAssigned",
                jobId=jid,
                provider=seat.provider,
                seat=i,
                price=seat.price,
                ratePerHour=seat.rate_per_hour,
                assignedAt=seat.assigned_at,
            )
        job.status = JobStatus.ASSIGNED
        for who, lock in zip(providers[already:], locks[already:], strict=True):
            self.providers[who].locked += lock
        return tx

    def _check_offer(
        self, jid: bytes, cap: int, o: AcceptedSeat, seat: int, terms_hash: bytes, now: int
    ) -> None:
        who = parse_address(o.provider)
        if now > o.expiry:
            raise E.OfferExpired(jobId=jid, provider=who, expiry=o.expiry)
        if o.price > cap:
            raise E.PriceAboveCap(price=o.price, priceCap=cap)
        if o.price < self.min_price:
            raise E.PriceBelowMinimum(price=o.price, minimum=self.min_price)
        if o.rate_per_hour == 0:
            raise E.InvalidRate(provider=who)
        typed = eip712.accept_typed_data(
            self.deployment.domain,
            JobId(jid),
            who,
            seat,
            o.price,
            o.rate_per_hour,
            terms_hash,
            o.expiry,
        )
        if not signed(typed, o.signature.to_bytes(), who):
            raise E.InvalidAccept(jobId=jid, provider=who)

    def settle(self, sender: Address, terms: JobTerms, s: Settlement) -> str:
        checked = self._check_settlement(sender, terms, s, self.next_time)
        if isinstance(checked, E.ContractError):
            raise checked
        tx = self._mine(sender)
        self._conclude(bytes(s.job_id), checked.tally, checked.winners, checked.slash, True)
        return tx

    def settle_batch(self, sender: Address, batch: list[tuple[JobTerms | None, Settlement]]) -> str:
        if len(batch) > MAX_BATCH:
            raise E.BatchTooLarge(size=len(batch), max=MAX_BATCH)
        tx = self._mine(sender)
        for terms, s in batch:
            checked = self._check_settlement(sender, terms, s, self.time)
            if isinstance(checked, E.ContractError):
                self._emit(
                    "market", "SettlementSkipped", jobId=bytes(s.job_id), reason=selector(checked)
                )
            else:
                self._conclude(bytes(s.job_id), checked.tally, checked.winners, checked.slash, True)
        return tx

    def abort(self, sender: Address, job_id: bytes, seats: list[Seat]) -> str:
        job = self._load(job_id, seats, JobStatus.OPEN, JobStatus.ASSIGNED)
        t = job.terms
        if sender != t.coordinator:
            raise E.NotCoordinator(jobId=bytes(job_id), caller=sender)
        if job.on_chain:
            raise E.CommittedOnChain(jobId=bytes(job_id))
        tx = self._mine(sender)
        job.status = JobStatus.ABORTED
        self._release(job.seats)
        self._credit(t.requester, t.escrow)
        self._emit("market", "JobAborted", jobId=bytes(job_id), refund=t.escrow)
        return tx

    # --------------------------------------------------------- market: provider
    def commit_on_chain(
        self, sender: Address, job_id: bytes, seats: list[Seat], seat: int, commit_hash: bytes
    ) -> str:
        jid = bytes(job_id)
        job = self._load(jid, seats, JobStatus.ASSIGNED)
        if seat >= len(seats) or seats[seat].provider != sender:
            raise E.NotAssignedProvider(jobId=jid, caller=sender)
        deadline = job.terms.commit_deadline(seats[seat])
        if self.next_time > deadline:
            raise E.CommitDeadlinePassed(jobId=jid, deadline=deadline)
        if self.entries.get((jid, seat), SeatEntry()).committed:
            raise E.AlreadyCommitted(jobId=jid, provider=sender)
        tx = self._mine(sender)
        self.entries[(jid, seat)] = SeatEntry(commit_hash=bytes(commit_hash), committed=True)
        job.on_chain = True
        self._emit(
            "market",
            "ProviderCommitted",
            jobId=jid,
            provider=sender,
            seat=seat,
            commitHash=bytes(commit_hash),
        )
        return tx

    def reveal_on_chain(
        self,
        sender: Address,
        job_id: bytes,
        seats: list[Seat],
        seat: int,
        result: bytes,
        runtime_ms: int,
        salt: bytes,
        provider_signature: bytes,
        receipt_signature: bytes,
    ) -> str:
        jid = bytes(job_id)
        job = self._load(jid, seats, JobStatus.ASSIGNED)
        t = job.terms
        if seat >= len(seats):
            raise E.NotAssignedProvider(jobId=jid, caller=sender)
        provider = seats[seat].provider
        opens_at = t.reveal_open(seats)
        now = self.next_time
        if now <= opens_at:
            raise E.RevealNotOpen(jobId=jid, opensAt=opens_at)
        if now > opens_at + t.reveal_window:
            raise E.RevealWindowClosed(jobId=jid, closedAt=opens_at + t.reveal_window)
        domain = self.deployment.domain
        if sender != provider:
            typed = eip712.reveal_typed_data(domain, JobId(jid), provider, result, runtime_ms, salt)
            if not signed(typed, provider_signature, provider):
                raise E.InvalidSignature(jobId=jid, provider=provider)
        entry = self.entries.get((jid, seat), SeatEntry())
        if entry.revealed:
            raise E.AlreadyRevealed(jobId=jid, provider=provider)
        opened = eip712.commit_hash(JobId(jid), provider, result, runtime_ms, salt)
        votes = False
        if entry.committed:
            if opened != entry.commit_hash:
                raise E.RevealMismatch(jobId=jid, provider=provider)
            votes = True
        elif receipt_signature:
            typed = eip712.receipt_typed_data(domain, JobId(jid), provider, seat, opened)
            if not signed(typed, receipt_signature, t.coordinator):
                raise E.InvalidReceipt(jobId=jid, provider=provider)
            votes = True
        tx = self._mine(sender)
        self.entries[(jid, seat)] = SeatEntry(
            opened, bytes(result), runtime_ms, entry.committed, True, votes
        )
        job.on_chain = True
        self._emit(
            "market",
            "ProviderRevealed",
            jobId=jid,
            provider=provider,
            seat=seat,
            result=bytes(result),
            runtimeMs=runtime_ms,
            salt=bytes(salt),
            votes=votes,
        )
        return tx

    def finalize(self, sender: Address, job_id: bytes, seats: list[Seat]) -> str:
        jid = bytes(job_id)
        job = self._load(jid, seats, JobStatus.ASSIGNED)
        t = job.terms
        if self.next_time <= t.settle_deadline:
            raise E.FinalizeTooEarly(jobId=jid, deadline=t.settle_deadline)
        tally = self._on_chain_tally(jid, job)
        decision = decide(tally, t.redundancy)
        if not decision.decided:
            raise E.NoMajority(jobId=jid)
        slash = decision.slash if t.mode == CompareMode.EXACT else 0
        tx = self._mine(sender)
        self._conclude(jid, tally, decision.best, slash, False)
        self._emit("market", "JobFinalized", jobId=jid, caller=sender)
        return tx
