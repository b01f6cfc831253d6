"""The job lifecycle: job states, seat states, seat outcomes and the one table of moves.

Every side uses this module: the coordinator's store refuses a move the tables do not allow,
the API streams events until a state that :attr:`JobState.ends_stream`, and the wallet stops
waiting at the same states (``failed`` exits 1 in the CLI).

A job::

    created ──> matching ──> assigned ──> running ──> committed ──> revealing ──> settled
                               ^  │   ^                   │             │  ^
                               │  └───┘ (a replacement,   │             v  │ (no tie-breaker
                               │         a spot-checker)  │          disputed   can join)
                               └──────────────────────────┴─────────────┘ (a tie-breaker)

    any state that is not final ──> failed
    the chain alone, from any state not final ──> settled | finalized | reclaimed | cancelled

``settled``, ``finalized``, ``reclaimed`` and ``cancelled`` are final: the chain can never
move the job again. ``failed`` means the coordinator gave up; when nobody committed the job is
aborted on chain (the requester refunded at once), otherwise the escrow waits for ``reclaim``
or ``finalize``, which the chain decides. A job the chain settled, finalized, reclaimed or
cancelled is so whatever the store believed.

A seat (one provider's part in one job)::

    offered ──> accepted ──> assigned ──> running ──> committed ──> revealed
       ^  │         │           │            │            │
       └──┼─────────┘(expired)  └────────────┴──> failed ─┘(late reveal) ──> replaced
          └─> declined (given back; never on chain)
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    CREATED = "created"  # seen on chain; the coordinator has not looked for providers yet
    MATCHING = "matching"  # seeking providers: offers out, or waiting for free capacity
    ASSIGNED = "assigned"  # seats on chain; assignments being delivered
    RUNNING = "running"  # every seat acknowledged its assignment
    COMMITTED = "committed"  # every live seat committed (or failed)
    REVEALING = "revealing"  # reveals collected; the verdict is being reached and settled
    DISPUTED = "disputed"  # no majority yet: a tie-breaker is being seated
    SETTLED = "settled"  # settled on chain by its coordinator
    FINALIZED = "finalized"  # settled on chain by someone else from on-chain reveals
    FAILED = "failed"  # the coordinator gave up (aborted, or left for reclaim/finalize)
    RECLAIMED = "reclaimed"  # refunded to the requester after the settle deadline
    CANCELLED = "cancelled"  # cancelled by the requester before any seat

    @property
    def final(self) -> bool:
        """The chain can never move a job out of this state."""
        return self in FINAL

    @property
    def terminal(self) -> bool:
        """Nothing more will come of the job for its requester: stop waiting (the CLI exits
        1 at ``failed``). A failed job may still be reclaimed, but yields no result."""
        return self in TERMINAL

    @property
    def ends_stream(self) -> bool:
        """A live event stream closes after this state."""
        return self.terminal


FINAL = frozenset({JobState.SETTLED, JobState.FINALIZED, JobState.RECLAIMED, JobState.CANCELLED})
TERMINAL = FINAL | {JobState.FAILED}

_S = JobState
_MATCHING_ON = frozenset({_S.ASSIGNED, _S.FAILED})
_RUNNING_ON = frozenset({_S.ASSIGNED, _S.RUNNING, _S.COMMITTED, _S.FAILED})
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _S.CREATED: frozenset({_S.MATCHING}) | _MATCHING_ON,
    _S.MATCHING: _MATCHING_ON,
    # assigned -> assigned records a replacement or a spot-checker joining.
    _S.ASSIGNED: _RUNNING_ON,
    _S.RUNNING: _RUNNING_ON,
    _S.COMMITTED: frozenset({_S.REVEALING, _S.DISPUTED, _S.ASSIGNED, _S.FAILED}),
    _S.REVEALING: frozenset({_S.DISPUTED, _S.FAILED}),
    # disputed -> disputed records the tie-breaker chosen; -> assigned once it is on chain;
    # -> revealing when none can be seated any more: the votes there are decide.
    _S.DISPUTED: frozenset({_S.ASSIGNED, _S.DISPUTED, _S.REVEALING, _S.FAILED}),
    # failed -> failed records the abort that refunded the requester.
    _S.FAILED: frozenset({_S.FAILED}),
    _S.SETTLED: frozenset(),
    _S.FINALIZED: frozenset(),
    _S.RECLAIMED: frozenset(),
    _S.CANCELLED: frozenset(),
}

CHAIN_DECIDED = FINAL
"""What the chain alone decides, from any state that is not final."""


def allowed(current: JobState, wanted: JobState) -> bool:
    """True when the lifecycle may move a job from ``current`` to ``wanted``."""
    if wanted in CHAIN_DECIDED and not current.final:
        return True
    return wanted in TRANSITIONS[current]


class SeatState(StrEnum):
    """One seat of one job: a provider's part in it."""

    OFFERED = "offered"  # chosen, persisted and offered; no consent yet (or it expired)
    ACCEPTED = "accepted"  # the provider signed Accept; the assign transaction not yet mined
    ASSIGNED = "assigned"  # on chain
    RUNNING = "running"  # acknowledged the Assignment
    COMMITTED = "committed"  # committed off chain (we hold its receipt) or on chain
    REVEALED = "revealed"  # its reveal opened the commitment (off chain, or voting on chain)
    FAILED = "failed"  # reported failure, handed back, went silent or never revealed
    REPLACED = "replaced"  # a replacement took its place (it stays in the on-chain list)
    DECLINED = "declined"  # the provider declined the offer: given back, never on chain

    @property
    def on_chain(self) -> bool:
        """The seat is part of the job's on-chain seats."""
        return self not in OFF_CHAIN


OFF_CHAIN = frozenset({SeatState.OFFERED, SeatState.ACCEPTED, SeatState.DECLINED})

_P = SeatState
SEAT_TRANSITIONS: dict[SeatState, frozenset[SeatState]] = {
    _P.OFFERED: frozenset({_P.ACCEPTED, _P.ASSIGNED, _P.DECLINED}),
    _P.ACCEPTED: frozenset({_P.OFFERED, _P.ASSIGNED, _P.DECLINED}),
    _P.ASSIGNED: frozenset({_P.RUNNING, _P.COMMITTED, _P.REVEALED, _P.FAILED, _P.REPLACED}),
    _P.RUNNING: frozenset({_P.COMMITTED, _P.REVEALED, _P.FAILED, _P.REPLACED}),
    _P.COMMITTED: frozenset({_P.REVEALED, _P.FAILED}),
    _P.REVEALED: frozenset(),
    # A failed seat may still prove itself: a commitment made on chain before its deadline,
    # or a reveal of the commitment it made.
    _P.FAILED: frozenset({_P.COMMITTED, _P.REVEALED, _P.REPLACED}),
    _P.REPLACED: frozenset({_P.COMMITTED, _P.REVEALED}),
    _P.DECLINED: frozenset(),
}


def seat_allowed(current: SeatState, wanted: SeatState) -> bool:
    """True when a seat may move from ``current`` to ``wanted`` (staying put always may)."""
    return current is wanted or wanted in SEAT_TRANSITIONS[current]


class Outcome(StrEnum):
    """What settlement did with a seat's stake and pay."""

    PAID = "paid"
    SLASHED = "slashed"
    RELEASED = "released"  # nothing signed: stake released, not paid


class Phase(StrEnum):
    """A point in a job's life that its timeline shows, in order: the lifecycle's transitions
    plus when the first seat was chosen and when the assign and settle transactions were
    mined (times are the coordinator's clock)."""

    QUEUED = "queued"  # the coordinator learned of the job
    MATCHED = "matched"  # its first seat was chosen (offers out)
    ASSIGN_TX_MINED = "assign_tx_mined"  # seats on chain: the first move to assigned
    DELIVERED = "delivered"  # every seat acknowledged its assignment (running)
    ALL_COMMITTED = "all_committed"  # every live seat committed (committed)
    ALL_REVEALED = "all_revealed"  # reveals collected (revealing)
    SETTLE_TX_MINED = "settle_tx_mined"  # settled or finalized on chain


PHASE_OF_STATE: dict[JobState, Phase] = {
    JobState.CREATED: Phase.QUEUED,
    JobState.ASSIGNED: Phase.ASSIGN_TX_MINED,
    JobState.RUNNING: Phase.DELIVERED,
    JobState.COMMITTED: Phase.ALL_COMMITTED,
    JobState.REVEALING: Phase.ALL_REVEALED,
    JobState.SETTLED: Phase.SETTLE_TX_MINED,
    JobState.FINALIZED: Phase.SETTLE_TX_MINED,
}
"""The phase a job reaches the first time it enters each of these states."""


__all__ = [
    "CHAIN_DECIDED",
    "FINAL",
    "PHASE_OF_STATE",
    "SEAT_TRANSITIONS",
    "TERMINAL",
    "TRANSITIONS",
    "JobState",
    "Outcome",
    "Phase",
    "SeatState",
    "allowed",
    "seat_allowed",
]
