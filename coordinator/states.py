"""The job lifecycle and each seat's part in it: states and the transitions between them.

::

    created ──> assigned ──> running ──> committed ──> revealed ──> settled
       │            │   ^        │            │            │
       │            └───┘(replacement)        └─> disputed ┘ (tie-breaker, tolerance split)
       ├─> cancelled           any non-final state ──> failed ──> reclaimed
       └─> reclaimed

``settled``, ``reclaimed`` and ``cancelled`` are final: the chain can never move the job
again. ``failed`` means the coordinator gave up; when nobody committed on chain the
coordinator aborts the job (the requester is refunded at once, recorded as a ``failed``
event with the abort transaction), otherwise the escrow stays until ``reclaim`` (or
``finalize``), which the chain watcher records. Chain events override the lifecycle (a job
settled or reclaimed on chain is so whatever the store believed).

A seat (one provider's part in one job, :class:`ProviderState`)::

    planned ──> accepted ──> assigned ──> running ──> committed ──> revealed
       ^  │         │           │            │            │
       └──┼─────────┘(expired)  └────────────┴──> failed ─┘(late reveal) ──> replaced
          └─> (declined: the seat is given back and recorded in the job's declines)
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    CREATED = "created"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMMITTED = "committed"
    REVEALED = "revealed"
    SETTLED = "settled"
    DISPUTED = "disputed"
    FAILED = "failed"
    RECLAIMED = "reclaimed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """The chain can never move a job out of this state."""
        return self in FINAL

    @property
    def ends_stream(self) -> bool:
        """An event stream closes after this state (failed waits only for a reclaim)."""
        return self in FINAL or self is JobState.FAILED


FINAL = frozenset({JobState.SETTLED, JobState.RECLAIMED, JobState.CANCELLED})

_S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _S.CREATED: frozenset({_S.ASSIGNED, _S.CANCELLED, _S.FAILED, _S.RECLAIMED}),
    _S.ASSIGNED: frozenset({_S.ASSIGNED, _S.RUNNING, _S.COMMITTED, _S.FAILED, _S.RECLAIMED}),
    _S.RUNNING: frozenset({_S.ASSIGNED, _S.RUNNING, _S.COMMITTED, _S.FAILED, _S.RECLAIMED}),
    _S.COMMITTED: frozenset({_S.REVEALED, _S.DISPUTED, _S.ASSIGNED, _S.FAILED, _S.RECLAIMED}),
    _S.REVEALED: frozenset({_S.SETTLED, _S.DISPUTED, _S.FAILED, _S.RECLAIMED}),
    _S.DISPUTED: frozenset({_S.ASSIGNED, _S.DISPUTED, _S.SETTLED, _S.FAILED, _S.RECLAIMED}),
    # failed -> failed records the abort that refunded the requester.
    _S.FAILED: frozenset({_S.FAILED, _S.RECLAIMED}),
    _S.SETTLED: frozenset(),
    _S.RECLAIMED: frozenset(),
    _S.CANCELLED: frozenset(),
}

# What the chain alone can decide, from any non-final state.
CHAIN_DECIDED = frozenset({_S.SETTLED, _S.RECLAIMED, _S.CANCELLED})


def allowed(current: JobState, wanted: JobState) -> bool:
    """True when the lifecycle may move a job from ``current`` to ``wanted``."""
    if wanted in CHAIN_DECIDED and not current.final:
        return True
    return wanted in TRANSITIONS[current]


class ProviderState(StrEnum):
    """One seat of one job: a provider's part in it."""

    PLANNED = "planned"  # chosen and persisted; no consent yet (or its consent expired)
    ACCEPTED = "accepted"  # the provider signed Accept; the assign transaction not yet mined
    ASSIGNED = "assigned"  # on chain
    RUNNING = "running"  # acknowledged the Assignment
    COMMITTED = "committed"  # committed off chain (we hold its receipt) or on chain
    REVEALED = "revealed"  # its reveal opened the commitment (off chain, or a voting one on chain)
    FAILED = "failed"  # reported failure, handed back, went silent or never revealed
    REPLACED = "replaced"  # a replacement took its place (it stays in the on-chain list)

    @property
    def on_chain(self) -> bool:
        """The seat is part of the job's on-chain seats."""
        return self not in (ProviderState.PLANNED, ProviderState.ACCEPTED)


_P = ProviderState
SEAT_TRANSITIONS: dict[ProviderState, frozenset[ProviderState]] = {
    _P.PLANNED: frozenset({_P.ACCEPTED, _P.ASSIGNED}),
    _P.ACCEPTED: frozenset({_P.PLANNED, _P.ASSIGNED}),
    _P.ASSIGNED: frozenset({_P.RUNNING, _P.COMMITTED, _P.REVEALED, _P.FAILED, _P.REPLACED}),
    _P.RUNNING: frozenset({_P.COMMITTED, _P.REVEALED, _P.FAILED, _P.REPLACED}),
    _P.COMMITTED: frozenset({_P.REVEALED, _P.FAILED}),
    _P.REVEALED: frozenset(),
    # A failed seat may still prove itself: a commitment made on chain before its deadline,
    # or a reveal of the commitment it made.
    _P.FAILED: frozenset({_P.COMMITTED, _P.REVEALED, _P.REPLACED}),
    _P.REPLACED: frozenset({_P.COMMITTED, _P.REVEALED}),
}


def seat_allowed(current: ProviderState, wanted: ProviderState) -> bool:
    """True when a seat may move from ``current`` to ``wanted`` (staying put always may)."""
    return current is wanted or wanted in SEAT_TRANSITIONS[current]


class Outcome(StrEnum):
    PAID = "paid"
    SLASHED = "slashed"
    RELEASED = "released"  # nothing signed: stake released, not paid
