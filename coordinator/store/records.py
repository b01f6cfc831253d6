"""Plain, frozen rows the store hands out (no SQLAlchemy objects leave the store).

Amounts and uint64 millisecond counts are kept as Python ints and stored as decimal text
(they do not fit a signed BIGINT); the conversions live in :data:`_BIG` below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from contracts.models import CompareMode, JobTerms, Seat
from protocol.ids import Address, Cid, Wei, parse_address
from protocol.lifecycle import JobState, Outcome, SeatState


def _to_text(row: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if row[name] is not None:
            row[name] = str(row[name])


def _to_int(row: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if row.get(name) is not None:
            row[name] = int(row[name])


_JOB_BIG = ("price_cap", "fee", "timeout_ms", "refund")


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    state: JobState
    requester: Address
    coordinator: Address
    spec_cid: Cid
    redundancy: int
    mode: CompareMode
    price_cap: Wei
    fee: Wei
    timeout_ms: int
    assign_deadline: int
    commit_window: int
    reveal_window: int
    spare_deadline: int
    settle_deadline: int
    created_block: int
    seed: int
    created_at: float
    updated_at: float
    result_cid: Cid | None = None
    failure_reason: str | None = None
    failure_provider: str | None = None
    settle_tx: str | None = None
    requirements: dict[str, Any] | None = None
    settle_attempts: int = 0
    abort_tx: str | None = None
    refund: Wei | None = None
    """What the requester got back: at settlement (unused seats) or abort (everything)."""
    waiting: str | None = None
    """Why the job waits (no provider free or matching yet); cleared once it moves on."""
    spot_check_p: float | None = None
    """The chance a lone primary was checked with (set once the draw was made)."""
    spot_checked: bool | None = None
    """The draw: None until it is made (after the primary committed)."""
    spot_check_note: str | None = None
    """The policy's reason, or why a drawn check was not seated."""
    checker: str | None = None
    """The spot-checker's address, once one was chosen."""
    matched_at: float | None = None
    """When the first seat was chosen (the coordinator's clock): the ``matched`` phase."""
    history_recorded: bool = False
    """The job's figures went into the hourly history (once only)."""

    def to_row(self) -> dict[str, Any]:
        row = {k: getattr(self, k) for k in self.__dataclass_fields__}
        row["state"] = str(self.state)
        row["mode"] = int(self.mode)
        _to_text(row, _JOB_BIG)
        row["requirements"] = None if self.requirements is None else json.dumps(self.requirements)
        return row

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        m = dict(row._mapping)
        m["state"] = JobState(m["state"])
        m["mode"] = CompareMode(m["mode"])
        _to_int(m, _JOB_BIG)
        m["requirements"] = json.loads(m["requirements"]) if m["requirements"] else None
        m["history_recorded"] = bool(m.get("history_recorded"))
        return cls(**m)

    @property
    def exact(self) -> bool:
        return self.mode == CompareMode.EXACT

    def terms(self) -> JobTerms:
        """The job's on-chain terms, as its JobCreated event stated them."""
        return JobTerms(
            requester=self.requester,
            coordinator=self.coordinator,
            redundancy=self.redundancy,
            mode=self.mode,
            price_cap=self.price_cap,
            fee=self.fee,
            timeout_ms=self.timeout_ms,
            assign_deadline=self.assign_deadline,
            commit_window=self.commit_window,
            reveal_window=self.reveal_window,
            spare_deadline=self.spare_deadline,
            settle_deadline=self.settle_deadline,
        )


class SeatFailure(StrEnum):
    """Why a seat failed before it committed: whose fault it was, for its reputation."""

    TIMEOUT = "timeout"  # no commitment by its commit deadline, or went silent
    FAULT = "fault"  # the provider's side: refused its assignment, a sandbox error, handed back
    JOB = "job"  # it reported that the job's own code or data failed


_SLOT_BIG = (
    "price",
    "rate_per_hour",
    "runtime_ms",
    "billed_ms",
    "pay",
    "slashed",
    "onchain_runtime_ms",
)


@dataclass(frozen=True)
class ProviderSlot:
    """One seat of a job, in on-chain order (``idx`` is the seat index).

    Seats not yet on chain (``planned``, ``accepted``) always follow the on-chain ones.
    ``commit_hash``/``commit_sig`` are the provider's off-chain Commit, ``receipt_sig``
    the CommitReceipt this coordinator signed for it; ``onchain_*`` what the seat put on
    chain itself (from ``ProviderCommitted`` / ``ProviderRevealed``); ``billed_ms``,
    ``pay`` and ``slashed`` come from the job's ``JobSettled`` / ``ProviderSlashed``.
    """

    job_id: str
    idx: int
    address: Address
    peer_id: str
    price: Wei
    state: SeatState
    updated_at: float
    multiaddrs: tuple[str, ...] = field(default=())
    rate_per_hour: Wei = Wei(0)  # noqa: RUF009 (an immutable int)
    assigned_at: int | None = None
    accept_sig: str | None = None
    accept_expiry: int | None = None
    busy: bool = False
    """The provider declined (or refused delivery) as busy: retried once it looks free."""
    replaces: int | None = None
    """The failed seat this one replaces (it becomes ``replaced`` once this one is on chain)."""
    commit_hash: str | None = None
    commit_sig: str | None = None
    receipt_sig: str | None = None
    result_cid: Cid | None = None
    runtime_ms: int | None = None
    salt: str | None = None
    reveal_sig: str | None = None
    reveal_attempts: int = 0
    onchain_commit: str | None = None
    """The hash it committed on chain itself (``commitOnChain``)."""
    onchain_reveal_hash: str | None = None
    """The commitment its on-chain reveal opened (``revealOnChain``)."""
    onchain_result: str | None = None
    onchain_runtime_ms: int | None = None
    onchain_votes: bool = False
    outcome: Outcome | None = None
    billed_ms: int | None = None
    pay: Wei | None = None
    slashed: Wei | None = None
    detail: str | None = None
    failure: SeatFailure | None = None
    """Whose fault a failure before committing was (set with the ``failed`` state)."""
    reputation_recorded: bool = False
    """Its outcome went into its provider's reputation (or was judged neutral): once only."""

    def to_row(self) -> dict[str, Any]:
        row = {k: getattr(self, k) for k in self.__dataclass_fields__}
        row["state"] = str(self.state)
        row["outcome"] = None if self.outcome is None else str(self.outcome)
        row["failure"] = None if self.failure is None else str(self.failure)
        _to_text(row, _SLOT_BIG)
        row["multiaddrs"] = json.dumps(list(self.multiaddrs))
        return row

    @classmethod
    def from_row(cls, row: Any) -> ProviderSlot:
        m = dict(row._mapping)
        m["state"] = SeatState(m["state"])
        m["outcome"] = None if m["outcome"] is None else Outcome(m["outcome"])
        m["failure"] = None if m["failure"] is None else SeatFailure(m["failure"])
        _to_int(m, _SLOT_BIG)
        m["busy"] = bool(m["busy"])
        m["reputation_recorded"] = bool(m["reputation_recorded"])
        m["onchain_votes"] = bool(m["onchain_votes"])
        m["multiaddrs"] = tuple(json.loads(m["multiaddrs"]))
        return cls(**m)

    @property
    def active(self) -> bool:
        """Still expected to deliver (not failed, not replaced)."""
        return self.state not in (SeatState.FAILED, SeatState.REPLACED)

    @property
    def committed(self) -> bool:
        """It committed, off chain (we hold its signed Commit) or on chain."""
        return self.commit_hash is not None or self.onchain_commit is not None

    @property
    def onchain_revealed(self) -> bool:
        return self.onchain_reveal_hash is not None

    def commit_deadline(self, commit_window: int) -> int | None:
        return None if self.assigned_at is None else self.assigned_at + commit_window

    def seat(self) -> Seat:
        """The on-chain seat this slot stands for (only for slots on chain)."""
        if self.assigned_at is None:
            raise ValueError(f"seat {self.idx} of {self.job_id} is not on chain yet")
        return Seat(
            provider=Address(parse_address(self.address)),
            price=Wei(self.price),
            rate_per_hour=Wei(self.rate_per_hour),
            assigned_at=self.assigned_at,
        )


@dataclass(frozen=True)
class ReputationRecord:
    """A provider's stored reputation: the posterior at ``updated_at`` and the verified
    outcomes counted into it, per kind (seeded ones included)."""

    address: str
    alpha: float
    beta: float
    updated_at: float
    successes: int = 0
    slashes: int = 0
    faults: int = 0
    timeouts: int = 0
    withheld: int = 0

    def to_row(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_row(cls, row: Any) -> ReputationRecord:
        return cls(**dict(row._mapping))


@dataclass(frozen=True)
class DeclineRecord:
    """A provider that declined a seat of a job (or whose answer could not be used)."""

    job_id: str
    seat: int
    address: str
    reason: str
    at: float


@dataclass(frozen=True)
class EventRecord:
    id: int
    job_id: str
    state: JobState
    at: float
    detail: dict[str, Any]


@dataclass(frozen=True)
class LogLine:
    provider: str
    at: float
    text: str
