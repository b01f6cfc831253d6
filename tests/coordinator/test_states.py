"""The lifecycle table."""

from itertools import pairwise

from coordinator.states import FINAL, TRANSITIONS, JobState, allowed


def test_happy_path_is_allowed() -> None:
    path = ["created", "assigned", "running", "committed", "revealed", "settled"]
    for a, b in pairwise(path):
        assert allowed(JobState(a), JobState(b))


def test_final_states_have_no_way_out() -> None:
    for state in FINAL:
        assert all(not allowed(state, other) for other in JobState)


def test_chain_decisions_apply_from_any_open_state_but_no_skipping_ahead() -> None:
    for state in JobState:
        if not state.final:
            assert allowed(state, JobState.SETTLED) and allowed(state, JobState.RECLAIMED)
    assert not allowed(JobState.CREATED, JobState.REVEALED)
    assert not allowed(JobState.FAILED, JobState.ASSIGNED)
    assert set(TRANSITIONS) == set(JobState)
