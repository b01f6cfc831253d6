"""A job's deadlines and windows, sized from its timeout (pure arithmetic, no I/O).

A seat has ``commit_window`` seconds from its assignment to commit: the timeout plus a
margin for fetching inputs, building the result's CID and, when the coordinator does not
answer, committing on chain. Seats that depend on an earlier seat's commitment run after
it, so the spare deadline leaves room for ``runs`` of them in a row:

* redundancy 1 (``auto`` included): a primary, then a spot-checker seated once the
  primary's commitment is in, then a tie-breaker once the checker's is: three runs;
* redundancy 2 or more: the primaries together, then a tie-breaker: two runs.

The assign window is the phase's margin plus the wait for the jobs already queued at the
coordinator (:func:`queue_wait`): their seats ahead of this job's, spread over the job slots
of the providers that could run it, each seat taking at most the job's timeout. A job
submitted into a busy market is then still seated in time instead of failing unassigned;
into an idle one it gets the plain margin.

The last seat commits by ``spare_deadline + commit_window``; reveals follow, then the
coordinator has a margin to settle. ``contracts/README.md`` ("Terms") lists the checks the
market makes at creation; :func:`job_windows` always satisfies them or raises.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.models import MAX_JOB_DURATION_S
from contracts.network import PhaseWindows
from protocol.errors import SpecError

DEFAULT_PHASES = PhaseWindows()
"""The margins on the devnet (a network profile may widen them for a slower chain)."""
ASSIGN_WINDOW_S = DEFAULT_PHASES.assign_window_s
COMMIT_MARGIN_S = DEFAULT_PHASES.commit_margin_s
REVEAL_WINDOW_S = DEFAULT_PHASES.reveal_window_s
SETTLE_MARGIN_S = DEFAULT_PHASES.settle_margin_s


MAX_QUEUE_WAIT_S = 6 * 3600
"""The most the assign window grows for the jobs ahead (beyond it, better to wait and submit
later than to lock the escrow that long)."""


def queue_wait(seats_ahead: int, slots: int, seat_s: int) -> int:
    """Seconds the ``seats_ahead`` of a new job may keep ``slots`` job slots busy when each
    seat runs at most ``seat_s``: the rounds they need, at most :data:`MAX_QUEUE_WAIT_S`."""
    if seats_ahead <= 0:
        return 0
    rounds = -(-seats_ahead // max(1, slots))
    return min(MAX_QUEUE_WAIT_S, rounds * max(0, seat_s))


@dataclass(frozen=True)
class JobWindows:
    """The time fields of a ``JobRequest``: ``timeout_ms`` in milliseconds, windows in
    seconds, deadlines as block timestamps."""

    timeout_ms: int
    assign_deadline: int
    commit_window: int
    reveal_window: int
    spare_deadline: int
    settle_deadline: int


def runs_in_a_row(redundancy: int) -> int:
    """How many seats may have to run one after another (see the module docstring)."""
    return 3 if redundancy == 1 else 2


def job_windows(
    now: int,
    timeout_s: int,
    redundancy: int,
    phases: PhaseWindows = DEFAULT_PHASES,
    *,
    queue_wait_s: int = 0,
) -> JobWindows:
    """Deadlines for a job created at block time ``now`` whose spec allows ``timeout_s``
    seconds of run time, with ``redundancy`` primaries on chain (1 for ``auto``), sized
    with ``phases`` (the network profile's margins) and ``queue_wait_s`` more to be
    assigned in (:func:`queue_wait`)."""
    if timeout_s <= 0:
        raise SpecError("timeout", f"must be positive, got {timeout_s}s")
    commit_window = timeout_s + phases.commit_margin_s
    assign_window = phases.assign_window_s + max(0, queue_wait_s)
    assign_deadline = now + assign_window
    runs = runs_in_a_row(redundancy)
    spare_deadline = assign_deadline + (runs - 1) * commit_window
    settle_deadline = (
        spare_deadline + commit_window + phases.reveal_window_s + phases.settle_margin_s
    )
    if settle_deadline > now + MAX_JOB_DURATION_S:
        fixed = assign_window + phases.reveal_window_s + phases.settle_margin_s
        longest = (MAX_JOB_DURATION_S - fixed) // runs - phases.commit_margin_s
        raise SpecError(
            "timeout",
            f"{timeout_s}s makes the job outlive the market's "
            f"{MAX_JOB_DURATION_S // 86400}-day limit ({runs} runs in a row at redundancy "
            f"{redundancy}); use at most {longest}s",
        )
    return JobWindows(
        timeout_ms=timeout_s * 1000,
        assign_deadline=assign_deadline,
        commit_window=commit_window,
        reveal_window=phases.reveal_window_s,
        spare_deadline=spare_deadline,
        settle_deadline=settle_deadline,
    )
