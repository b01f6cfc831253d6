"""The in-memory market's job records and the one quorum rule applied to them: the tally
of a settlement (or of the on-chain state alone) and the payout of a decided job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts import errors as E
from contracts.fake_ledger import signed
from contracts.fake_registry import FakeRegistry
from contracts.models import (
    CompareMode,
    EntryKind,
    JobStatus,
    JobTerms,
    Seat,
    Settlement,
)
from contracts.rules import (
    Tally,
    best_group,
    billed_ms,
    pack_paid_and_billed,
    pay_for,
    popcount,
    quorum,
    seat_chain,
)
from protocol import eip712
from protocol.ids import Address


@dataclass
class SeatEntry:
    """What a seat put on chain itself (``onChainEntry``)."""

    commit_hash: bytes = b"\0" * 32
    result: bytes = b"\0" * 32
    runtime_ms: int = 0
    committed: bool = False
    revealed: bool = False
    votes: bool = False


@dataclass
class Job:
    terms: JobTerms
    spec_digest: bytes
    spec_cid: str
    created_block: int
    status: JobStatus = JobStatus.OPEN
    seats: list[Seat] = field(default_factory=list)
    on_chain: bool = False  # some seat committed or revealed on chain


@dataclass(frozen=True)
class Checked:
    """A settlement that passed validation: its tally, winners and slash mask."""

    tally: Tally
    winners: int
    slash: int


class FakeJobs(FakeRegistry):
    """Jobs, on-chain entries and ``burned``; deciding and paying jobs."""

    def __init__(self, **registry: Any) -> None:
        super().__init__(**registry)
        self.jobs: dict[bytes, Job] = {}
        self.entries: dict[tuple[bytes, int], SeatEntry] = {}
        self.burned = 0

    def job(self, job_id: bytes, *allowed: JobStatus) -> Job:
        """The job, or JobNotFound / WrongStatus as ``_expectStatus`` raises them."""
        job = self.jobs.get(bytes(job_id))
        if job is None:
            raise E.JobNotFound(jobId=bytes(job_id))
        if allowed and job.status not in allowed:
            raise E.WrongStatus(jobId=bytes(job_id), status=int(job.status))
        return job

    def _load(self, job_id: bytes, seats: list[Seat], *allowed: JobStatus) -> Job:
        job = self.job(job_id, *allowed)
        if len(seats) != len(job.seats):
            raise E.LengthMismatch()
        if seat_chain(seats) != seat_chain(job.seats):
            raise E.RecordMismatch(jobId=bytes(job_id))
        return job

    def entry(self, job_id: bytes, seat: int) -> SeatEntry:
        return self.entries.get((bytes(job_id), seat), SeatEntry())

    def _check_settlement(
        self, sender: Address, terms: JobTerms | None, s: Settlement, now: int
    ) -> Checked | E.ContractError:
        """``JobMarket._check``: the settlement's outcome, or the error settle would raise."""
        jid = bytes(s.job_id)
        job = self.jobs.get(jid)
        if job is None:
            return E.JobNotFound(jobId=jid)
        if job.status != JobStatus.ASSIGNED:
            return E.WrongStatus(jobId=jid, status=int(job.status))
        n = len(s.seats)
        if n != len(job.seats) or len(s.entries) != n:
            return E.LengthMismatch()
        if terms != job.terms or seat_chain(s.seats) != seat_chain(job.seats):
            return E.RecordMismatch(jobId=jid)
        t = job.terms
        if sender != t.coordinator:
            return E.NotCoordinator(jobId=jid, caller=sender)
        if now > t.settle_deadline:
            return E.SettleDeadlinePassed(jobId=jid, deadline=t.settle_deadline)
        tally = self._settlement_tally(s, job, now)
        if isinstance(tally, E.ContractError):
            return tally
        q = quorum(tally, t.redundancy)
        slash = 0
        if t.mode == CompareMode.EXACT:
            if s.winners != 0:
                return E.InvalidWinners(jobId=jid, winners=s.winners)
            winners = best_group(tally)
            slash = (tally.votes & ~winners) | tally.withheld
        else:
            winners = s.winners
            if winners == 0 or winners & ~tally.votes:
                return E.InvalidWinners(jobId=jid, winners=winners)
        if 2 * popcount(winners) <= q:
            return E.NoMajority(jobId=jid)
        return Checked(tally, winners, slash)

    def _settlement_tally(self, s: Settlement, job: Job, now: int) -> Tally | E.ContractError:
        """Per seat: a voting on-chain reveal, else the entry (REVEAL votes; COMMIT is
        withheld unless an on-chain reveal opened it), else an on-chain commit never
        revealed (withheld once the reveal window closed). Before the reveal window closes
        every live seat needs a vote, and COMMIT entries are refused."""
        jid = bytes(s.job_id)
        t = job.terms
        early = now <= t.reveal_close(job.seats)
        domain = self.deployment.domain
        tally = Tally.empty(len(job.seats))
        for i, (seat, e) in enumerate(zip(job.seats, s.entries, strict=True)):
            if e.kind != EntryKind.NONE:
                if e.kind == EntryKind.REVEAL:
                    typed = eip712.reveal_typed_data(
                        domain, s.job_id, seat.provider, e.value, e.runtime_ms, e.salt
                    )
                elif e.kind == EntryKind.COMMIT:
                    typed = eip712.commit_typed_data(domain, s.job_id, seat.provider, e.value)
                else:
                    return E.InvalidSignatureKind(index=i, kind=int(e.kind))
                sig = e.signature.to_bytes() if e.signature is not None else b""
                if not signed(typed, sig, seat.provider):
                    return E.InvalidSignature(jobId=jid, provider=seat.provider)
                if e.kind == EntryKind.COMMIT and early:
                    return E.SettleTooEarly(jobId=jid, seat=i)
            oc = self.entries.get((jid, i), SeatEntry())
            if oc.revealed and oc.votes:
                tally.vote(i, oc.result, oc.runtime_ms)
            elif e.kind == EntryKind.REVEAL:
                tally.vote(i, e.value, e.runtime_ms)
            elif e.kind == EntryKind.COMMIT:
                if not (oc.revealed and oc.commit_hash == e.value):
                    tally.withhold(i)
            elif oc.committed and not oc.revealed and not early:
                tally.withhold(i)
            live = oc.committed or now <= t.commit_deadline(seat)
            if early and not tally.votes >> i & 1 and live:
                return E.SettleTooEarly(jobId=jid, seat=i)
        return tally

    def _on_chain_tally(self, job_id: bytes, job: Job) -> Tally:
        tally = Tally.empty(len(job.seats))
        for i in range(len(job.seats)):
            oc = self.entries.get((bytes(job_id), i), SeatEntry())
            if oc.revealed and oc.votes:
                tally.vote(i, oc.result, oc.runtime_ms)
            elif oc.committed and not oc.revealed:
                tally.withhold(i)
        return tally

    def _conclude(
        self, jid: bytes, tally: Tally, winners: int, slash: int, fee_to_coordinator: bool
    ) -> None:
        """Pay a decided job: release every lock; bill and credit winners; burn the locks of
        slashed seats; the fee to the coordinator when it settled; the rest refunded."""
        job = self.jobs[jid]
        t = job.terms
        job.status = JobStatus.SETTLED
        billed = billed_ms(tally.runtimes, winners, t.timeout_ms)
        paid_and_billed = [0] * len(job.seats)
        paid = 0
        for i, seat in enumerate(job.seats):
            p = self.providers[seat.provider]
            lock = seat.price * self.stake_factor
            p.locked -= lock
            if winners >> i & 1:
                pay = pay_for(seat.price, seat.rate_per_hour, billed[i])
                paid += pay
                p.earned += pay
                p.completed += 1
                paid_and_billed[i] = pack_paid_and_billed(pay, billed[i])
            elif slash >> i & 1:
                self.burned += lock
                p.stake -= lock
                p.slashed += 1
                self._emit(
                    "market", "ProviderSlashed", jobId=jid, provider=seat.provider, amount=lock
                )
        result = tally.results[(winners & -winners).bit_length() - 1]  # the first winner's
        fee = t.fee if fee_to_coordinator else 0
        self._credit(t.coordinator, fee)
        refund = t.escrow - paid - fee
        self._credit(t.requester, refund)
        self._emit(
            "market",
            "JobSettled",
            jobId=jid,
            result=result,
            winners=winners,
            slashMask=slash,
            paidAndBilled=paid_and_billed,
            refund=refund,
        )
