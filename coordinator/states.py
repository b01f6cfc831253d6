"""The job lifecycle: states and the transitions between them.

::

    created ──> assigned ──> running ──> committed ──> revealed ──> settled
       │            │   ^        │            │            │
       │            └───┘(replacement)        └─> disputed ┘ (tie-breaker, tolerance split)
       ├─> cancelled           any non-final state ──> failed ──> reclaimed
       └─> reclaimed

``settled``, ``reclaimed`` and ``cancelled`` are final: the chain can never move the job
again. ``failed`` means the coordinator gave up; the requester's escrow stays until
``reclaim``, which the chain watcher records as ``reclaimed``. Chain events override the
lifecycle (a job settled or reclaimed on chain is so whatever the store believed).
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
    _S.DISPUTED: frozenset({_S.ASSIGNED, _S.SETTLED, _S.FAILED, _S.RECLAIMED}),
    _S.FAILED: frozenset({_S.RECLAIMED}),
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
    """One provider's part in one job."""

    PLANNED = "planned"  # chosen and persisted; assign transaction not yet confirmed
    ASSIGNED = "assigned"  # on chain
    RUNNING = "running"  # acknowledged the Assignment
    COMMITTED = "committed"
    REVEALED = "revealed"
    FAILED = "failed"  # reported failure, handed back, or went silent
    REPLACED = "replaced"  # a replacement took its place (it stays in the on-chain list)


class Outcome(StrEnum):
    PAID = "paid"
    SLASHED = "slashed"
    RELEASED = "released"  # nothing signed: stake released, not paid
