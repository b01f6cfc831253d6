"""The one lifecycle table every side uses."""

from itertools import pairwise

from protocol.lifecycle import (
    FINAL,
    SEAT_TRANSITIONS,
    TERMINAL,
    TRANSITIONS,
    JobState,
    SeatState,
    allowed,
    seat_allowed,
)
from wallet import jobs


def test_happy_path_is_allowed() -> None:
    path = ["created", "matching", "assigned", "running", "committed", "revealing", "settled"]
    for a, b in pairwise(path):
        assert allowed(JobState(a), JobState(b))


def test_a_dispute_goes_back_to_assigned_for_its_tie_breaker() -> None:
    for a, b in pairwise(["revealing", "disputed", "disputed", "assigned", "running"]):
        assert allowed(JobState(a), JobState(b))


def test_final_states_have_no_way_out() -> None:
    for state in FINAL:
        assert all(not allowed(state, other) for other in JobState)


def test_chain_decisions_apply_from_any_open_state_but_no_skipping_ahead() -> None:
    for state in JobState:
        if not state.final:
            assert allowed(state, JobState.SETTLED) and allowed(state, JobState.RECLAIMED)
            assert allowed(state, JobState.FINALIZED)
    assert not allowed(JobState.CREATED, JobState.REVEALING)
    assert not allowed(JobState.FAILED, JobState.ASSIGNED)
    assert not allowed(JobState.REVEALING, JobState.ASSIGNED)
    assert set(TRANSITIONS) == set(JobState)


def test_terminal_is_final_plus_failed_and_ends_streams() -> None:
    assert TERMINAL == FINAL | {JobState.FAILED}
    assert JobState.DISPUTED not in TERMINAL and not JobState.DISPUTED.ends_stream
    assert all(s.ends_stream for s in TERMINAL)


def test_the_wallet_waits_for_exactly_the_terminal_states() -> None:
    assert jobs.TERMINAL == {str(s) for s in TERMINAL}
    assert jobs.FAILED in jobs.TERMINAL and "disputed" not in jobs.TERMINAL


def test_seat_table() -> None:
    assert set(SEAT_TRANSITIONS) == set(SeatState)
    assert seat_allowed(SeatState.OFFERED, SeatState.DECLINED)
    assert not seat_allowed(SeatState.ASSIGNED, SeatState.DECLINED)
    assert not seat_allowed(SeatState.REVEALED, SeatState.FAILED)
    assert not SeatState.DECLINED.on_chain and not SeatState.OFFERED.on_chain
    assert SeatState.REPLACED.on_chain
