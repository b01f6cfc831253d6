"""The challenger's verdicts against an honest in-process responder (the proofs functions a
provider runs), on a clock the test moves: a pass keeps the advertised figure and marks it
verified; an answer later than the claim's bound, or a wrong row, zeroes that dtype until a
later pass; every claimed dtype is challenged."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pytest
from eth_account import Account

from coordinator.matching.book import ProviderBook
from coordinator.matching.columns import DTYPE_INDEX
from coordinator.verification.challenger import Challenger
from proofs.challenge import ExactWork, device_row_digests
from proofs.challenge_wire import challenge_from_wire, rep_row, to_opened_row
from protocol.identity import Identity
from protocol.ids import PeerId
from protocol.messages import (
    Challenge,
    ChallengeOpen,
    ChallengeResponse,
    ChallengeRows,
    Message,
)
from protocol.signing import decode_signed, encode_signed, sign_message
from tests.coordinator.factories import cpu_advert

CLAIMS = {"fp32": 0.01, "bf16": 0.02}


def identity() -> Identity:
    return Identity.from_private_key(bytes(Account.create().key))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class HonestResponder:
    """Computes every challenge for real and answers it; the challenge takes ``delay_s``
    on the challenger's clock. ``corrupt`` flips a byte of every opened row."""

    def __init__(self, who: Identity, clock: Clock) -> None:
        self.who = who
        self.clock = clock
        self.delay_s = 0.0
        self.corrupt = False
        self.dtypes: list[str] = []
        self.kept: dict[bytes, ExactWork] = {}

    async def request(
        self,
        peer: PeerId,
        multiaddrs: Sequence[str],
        protocol_id: str,
        payload: bytes,
        timeout_s: float,
    ) -> bytes:
        body = decode_signed(payload).body
        reply: Message
        if isinstance(body, Challenge):
            self.dtypes.append(body.dtype)
            ch = challenge_from_wire(body)
            work = device_row_digests(ch, "cpu")
            self.kept[body.challenge_id] = work
            self.clock.now += self.delay_s
            reply = ChallengeResponse(
                challenge_id=body.challenge_id,
                provider=self.who.address,
                merkle_root=work.root,
                elapsed_s=1e-3,  # the provider's own figure: never trusted
            )
        else:
            assert isinstance(body, ChallengeOpen)
            work = self.kept[body.challenge_id]
            ch = work.challenge
            rows = []
            for o in work.open([rep_row(ch, i) for i in body.rows]):
                row = to_opened_row(ch, o)
                if self.corrupt:
                    values = bytearray(row.values)
                    values[0] ^= 0x40
                    row = row.model_copy(update={"values": bytes(values)})
                rows.append(row)
            reply = ChallengeRows(
                challenge_id=body.challenge_id, provider=self.who.address, rows=tuple(rows)
            )
        return encode_signed(sign_message(reply, self.who))


def setup() -> tuple[Challenger, HonestResponder, ProviderBook, Clock, str]:
    who = identity()
    clock = Clock()
    book = ProviderBook(time.time)
    assert book.accept(cpu_advert(who, CLAIMS))
    responder = HonestResponder(who, clock)
    challenger = Challenger(identity(), responder, book, n=16, target_s=0.01, clock=clock)
    return challenger, responder, book, clock, who.address


def figures(book: ProviderBook, address: str) -> dict[str, float]:
    slot = book.columns.slot(address)
    assert slot is not None
    return {d: float(book.columns.tflops[slot, i]) for d, i in DTYPE_INDEX.items()}


def verified(book: ProviderBook, address: str) -> set[str]:
    slot = book.columns.slot(address)
    assert slot is not None
    return {d for d, i in DTYPE_INDEX.items() if book.columns.measured[slot, i]}


@pytest.mark.timeout(60)
async def test_an_honest_timely_answer_keeps_every_claimed_figure_verified() -> None:
    challenger, responder, book, _, address = setup()
    responder.delay_s = 0.1
    assert await challenger.challenge(address) is True
    assert sorted(responder.dtypes) == sorted(CLAIMS)  # every claimed dtype, nothing else
    got = figures(book, address)
    assert {d: got[d] for d in CLAIMS} == pytest.approx(CLAIMS)  # the claim, not "implied"
    assert verified(book, address) == set(CLAIMS)
    assert book.entries[address].verified_at is not None


@pytest.mark.timeout(60)
async def test_correct_rows_later_than_the_bound_fail_the_claim() -> None:
    challenger, responder, book, _, address = setup()
    responder.delay_s = 30.0  # far past flops / claim * slack + allowance
    assert await challenger.challenge(address) is False
    assert figures(book, address)["fp32"] == 0.0 and figures(book, address)["bf16"] == 0.0
    assert challenger.dtype_results == {(address, "fp32"): False, (address, "bf16"): False}

    responder.delay_s = 0.1  # a later, timely pass restores the claim
    assert await challenger.challenge(address) is True
    assert figures(book, address)["fp32"] == pytest.approx(CLAIMS["fp32"])


@pytest.mark.timeout(60)
async def test_wrong_rows_fail_whatever_the_time() -> None:
    challenger, responder, book, _, address = setup()
    responder.corrupt = True
    assert await challenger.challenge(address) is False
    assert figures(book, address)["fp32"] == 0.0
    # the zero outranks the figure the provider keeps advertising
    slot = book.columns.slot(address)
    assert slot is not None and bool(book.columns.measured[slot, DTYPE_INDEX["fp32"]])
    assert np.count_nonzero(book.columns.tflops[slot]) == 0


def test_a_slow_claim_gets_narrower_products_not_many_times_its_target() -> None:
    """One product of the configured width may exceed the target at a CPU's claim; the
    width shrinks (in whole leaves) so the work stays near the target, and a fast claim
    keeps the full width."""
    book = ProviderBook(time.time)
    challenger = Challenger(identity(), None, book, n=4096, target_s=1.5)  # type: ignore[arg-type]
    slow = challenger.size("fp32", 0.05)  # 50 GFLOPS
    assert slow.m % 64 == 0 and 64 <= slow.m < 4096
    assert slow.flops / 0.05e12 <= 1.5 * 1.01
    fast = challenger.size("bf16", 100.0)
    assert fast.m == 4096
    assert fast.flops / 100e12 == pytest.approx(1.5, rel=0.05)
