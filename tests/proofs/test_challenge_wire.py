"""The wire <-> proofs challenge mapping both sides of CHALLENGE_PROTOCOL share."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from proofs.challenge import device_row_digests
from proofs.challenge_check import ExactChecker, pick_exact_rows
from proofs.challenge_wire import (
    challenge_from_wire,
    from_opened_row,
    rep_row,
    row_index,
    rows_to_open,
    to_opened_row,
)
from protocol.ids import Address
from protocol.messages import Challenge, ChallengeOpen, ChallengeRows
from protocol.messages.advert import Dtype

COORDINATOR = Address("0x" + "aa" * 20)
PROVIDER = Address("0x" + "bb" * 20)
SEED = bytes(range(32))


def wire(m: int = 16, k: int = 32, reps: int = 3, dtype: Dtype = "bf16") -> Challenge:
    return Challenge(
        challenge_id=b"\x05" * 16,
        coordinator=COORDINATOR,
        provider=PROVIDER,
        seed=SEED,
        dtype=dtype,
        m=m,
        k=k,
        reps=reps,
        deadline=2_000_000_000,
    )


def test_wire_challenge_names_the_exact_challenge() -> None:
    ch = challenge_from_wire(wire(m=128, k=64, reps=3, dtype="fp16"))
    assert (ch.seed, ch.dtype, ch.m, ch.k, ch.reps) == (SEED, "fp16", 128, 64, 3)


def test_wire_challenge_sizes_are_bounded() -> None:
    with pytest.raises(ValidationError, match="multiple of 64"):
        wire(m=100)
    with pytest.raises(ValidationError):
        wire(k=4097)  # past the exactness limit of fp32 accumulation
    with pytest.raises(ValidationError):
        wire(reps=0)


def test_row_index_is_rep_times_m_plus_row() -> None:
    ch = challenge_from_wire(wire(m=16, reps=3))
    assert row_index(ch, 2, 5) == 37
    assert rep_row(ch, 37) == (2, 5)
    assert all(rep_row(ch, row_index(ch, r, i)) == (r, i) for r in range(3) for i in range(16))
    assert rows_to_open(ch, [(0, 3), (1, 0)]) == (3, 16)


@pytest.mark.parametrize(("dtype", "m"), [("bf16", 16), ("fp32", 128), ("fp16", 64)])
def test_opened_rows_travel_and_verify(dtype: Dtype, m: int) -> None:
    ch = challenge_from_wire(wire(m=m, k=32, reps=3, dtype=dtype))
    work = device_row_digests(ch, "cpu")
    picks = pick_exact_rows(ch, work.root, b"\x09" * 32, 5)
    request = ChallengeOpen(
        challenge_id=b"\x05" * 16, coordinator=COORDINATOR, rows=rows_to_open(ch, picks)
    )
    sent = ChallengeRows(
        challenge_id=b"\x05" * 16,
        provider=PROVIDER,
        rows=tuple(to_opened_row(ch, o) for o in work.open([rep_row(ch, i) for i in request.rows])),
    )
    received = ChallengeRows.model_validate_json(sent.model_dump_json())
    checker = ExactChecker(ch)
    openings = [from_opened_row(ch, row) for row in received.rows]
    assert [(o.rep, o.row) for o in openings] == picks
    assert all(checker.check(work.root, o) is None for o in openings)
    # A row sent under another index does not verify.
    first = received.rows[0]
    moved = first.model_copy(update={"index": (first.index + 1) % ch.row_count})
    assert checker.check(work.root, from_opened_row(ch, moved)) is not None


def test_the_wire_bounds_are_the_challenges_own_limits() -> None:
    """The messages bound what the proofs module accepts; neither may drift alone."""
    from proofs import challenge as exact
    from protocol.messages import challenge as wire

    assert (wire.MAX_SIDE, wire.MAX_INNER, wire.MAX_REPS, wire.MAX_DEVICES) == (
        exact.EXACT_MAX_SIDE,
        exact.EXACT_MAX_INNER,
        exact.EXACT_MAX_REPS,
        exact.EXACT_MAX_DEVICES,
    )
    assert (wire.LEAF_ROWS, wire.DIGEST_BYTES) == (exact.LEAF_ROWS, exact.DIGEST_BYTES)


def test_wire_challenge_carries_its_device_count() -> None:
    msg = wire(reps=4).model_copy(update={"devices": 2})
    assert challenge_from_wire(Challenge.model_validate(msg.model_dump())).devices == 2
    with pytest.raises(ValidationError, match="multiple of devices"):
        Challenge.model_validate({**wire(reps=3).model_dump(), "devices": 2})
    with pytest.raises(ValidationError):
        Challenge.model_validate({**wire(reps=32).model_dump(), "devices": 32})
