"""The wire <-> proofs challenge mapping both sides of CHALLENGE_PROTOCOL share."""

from __future__ import annotations

import pytest

from proofs.challenge import numpy_products, respond
from proofs.challenge_check import RowChecker, pick_rows
from proofs.challenge_wire import (
    challenge_from_wire,
    from_opened_row,
    leaf_index,
    rep_row,
    rows_to_open,
    to_opened_row,
)
from protocol.ids import Address
from protocol.messages import Challenge, ChallengeOpen, ChallengeRows
from protocol.messages.advert import Dtype

COORDINATOR = Address("0x" + "aa" * 20)
PROVIDER = Address("0x" + "bb" * 20)


def wire(
    seed: int = 0x0102030405060708, n: int = 16, repeats: int = 3, dtype: Dtype = "bf16"
) -> Challenge:
    return Challenge(
        challenge_id=b"\x05" * 16,
        coordinator=COORDINATOR,
        provider=PROVIDER,
        seed=seed,
        n=n,
        dtype=dtype,
        repeats=repeats,
        deadline=2_000_000_000,
    )


def test_wire_challenge_is_square_with_a_widened_seed() -> None:
    ch = challenge_from_wire(wire())
    assert ch.seed == bytes(24) + bytes([1, 2, 3, 4, 5, 6, 7, 8])
    assert (ch.m, ch.k, ch.reps, ch.dtype) == (16, 16, 3, "bfloat16")
    assert challenge_from_wire(wire(dtype="tf32")).dtype == "float32"
    assert challenge_from_wire(wire(dtype="fp16")).dtype == "float16"


def test_row_index_is_rep_times_n_plus_row() -> None:
    ch = challenge_from_wire(wire(n=16, repeats=3))
    assert leaf_index(ch, 2, 5) == 37
    assert rep_row(ch, 37) == (2, 5)
    assert all(rep_row(ch, leaf_index(ch, r, i)) == (r, i) for r in range(3) for i in range(16))
    assert rows_to_open(ch, [(0, 3), (1, 0)]) == (3, 16)


@pytest.mark.parametrize("repeats", [1, 3])
def test_opened_rows_travel_and_verify(repeats: int) -> None:
    ch = challenge_from_wire(wire(n=16, repeats=repeats, dtype="fp32"))
    work = respond(ch, products=numpy_products)
    picks = pick_rows(ch, work.root, b"\x09" * 32, 5)
    request = ChallengeOpen(
        challenge_id=b"\x05" * 16, coordinator=COORDINATOR, rows=rows_to_open(ch, picks)
    )
    sent = ChallengeRows(
        challenge_id=b"\x05" * 16,
        provider=PROVIDER,
        rows=tuple(to_opened_row(ch, o) for o in work.open([rep_row(ch, i) for i in request.rows])),
    )
    received = ChallengeRows.model_validate_json(sent.model_dump_json())
    checker = RowChecker(ch)
    openings = [from_opened_row(ch, row) for row in received.rows]
    assert [(o.rep, o.row) for o in openings] == picks
    assert all(checker.check(work.root, o) is None for o in openings)
    # A row sent under another index does not verify.
    moved = received.rows[0].model_copy(update={"index": (received.rows[0].index + 1) % 16})
    assert checker.check(work.root, from_opened_row(ch, moved)) is not None
