"""The challenger's verdicts against an honest in-process responder (the proofs functions a
provider runs), on a clock the test moves: a pass keeps the advertised figure and marks it
verified; an answer later than the claim's bound, or a wrong row, zeroes that dtype until a
later pass; every claimed dtype is challenged."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from eth_account import Account

from coordinator.matching.book import ProviderBook
from coordinator.matching.columns import DTYPE_INDEX
from coordinator.verification.challenger import MAX_BUSY, Challenger
from proofs.challenge import ExactWork, device_row_digests
from proofs.challenge_wire import challenge_from_wire, rep_row, to_opened_row
from protocol.identity import Identity
from protocol.ids import PeerId
from protocol.messages import (
    Challenge,
    ChallengeOpen,
    ChallengeResponse,
    ChallengeRows,
    ErrorCode,
    ErrorReply,
    GpuInfo,
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
        self.busy = 0
        """Answer this many challenges with "busy" first."""
        self.devices: list[int] = []
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
        if isinstance(body, Challenge) and self.busy > 0:
            self.busy -= 1
            reply = ErrorReply(
                sender=self.who.address, code=ErrorCode.BUSY, message="busy: 0 GPUs free"
            )
        elif isinstance(body, Challenge):
            self.dtypes.append(body.dtype)
            self.devices.append(body.devices)
            ch = challenge_from_wire(body)
            work = device_row_digests(ch, ["cpu"] * ch.devices)
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
    checks = book.entries[address].checks
    assert sorted(checks) == sorted(CLAIMS)
    assert all(c.passed and c.devices == 1 and c.reason == "" for c in checks.values())
    assert {d: c.tflops for d, c in checks.items()} == pytest.approx(CLAIMS)


@pytest.mark.timeout(60)
async def test_correct_rows_later_than_the_bound_fail_the_claim() -> None:
    challenger, responder, book, _, address = setup()
    responder.delay_s = 30.0  # far past flops / claim * slack + allowance
    assert await challenger.challenge(address) is False
    assert figures(book, address)["fp32"] == 0.0 and figures(book, address)["bf16"] == 0.0
    assert challenger.dtype_results == {(address, "fp32"): False, (address, "bf16"): False}
    failed = book.entries[address].checks["fp32"]
    assert not failed.passed and "bound" in failed.reason

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


def gpu_advert(who: Identity, tflops: dict[str, float], gpus: int, free: int, seq: int = 1) -> Any:
    base = cpu_advert(who, tflops)
    return base.model_copy(
        update={
            "gpus": tuple(GpuInfo(name="H200", memory_bytes=2**37) for _ in range(gpus)),
            "free_gpus": free,
            "seq": seq,
        }
    )


@pytest.mark.timeout(60)
async def test_every_free_gpu_answers_at_once_so_one_gpu_cannot_pass_as_two() -> None:
    """An advert with two free GPUs gets a challenge split over two devices, bounded by one
    device's share: two devices at the claim answer in time; a host with one GPU computes
    both shares in turn, takes twice as long, and fails."""
    who = identity()
    clock = Clock()
    book = ProviderBook(time.time)
    assert book.accept(gpu_advert(who, {"bf16": 0.02}, gpus=2, free=2))
    responder = HonestResponder(who, clock)
    challenger = Challenger(
        identity(), responder, book, n=16, target_s=0.01, allowance_s=0.0, clock=clock
    )
    share_s = challenger.size("bf16", 0.02, 2).device_flops / 0.02e12
    responder.delay_s = share_s  # two devices, each at its claim
    assert await challenger.challenge(who.address) is True
    assert responder.devices == [2] and book.entries[who.address].checks["bf16"].devices == 2
    responder.delay_s = 2 * share_s  # one device computing both shares
    assert await challenger.challenge(who.address) is False
    assert figures(book, who.address)["bf16"] == 0.0


@pytest.mark.timeout(60)
async def test_busy_answers_are_asked_again_and_fail_when_they_persist() -> None:
    challenger, responder, book, clock, address = setup()
    responder.busy = 2  # jobs took the GPUs: both dtypes are busy once
    assert await challenger.challenge(address) is None
    assert verified(book, address) == set() and book.entries[address].checks == {}
    challenger._plan(address)
    assert challenger.due[address] == clock.now + challenger.retry_s
    responder.busy = 2 * MAX_BUSY
    for _ in range(MAX_BUSY - 1):
        await challenger.challenge(address)
    assert figures(book, address)["fp32"] == 0.0
    reason = book.entries[address].checks["fp32"].reason
    assert f"answered {MAX_BUSY} challenges in a row with busy" in reason
    responder.busy = 0  # a later timely answer restores it
    assert await challenger.challenge(address) is True


def test_adverts_queue_a_challenge_when_new_changed_or_offering_more_gpus() -> None:
    who = identity()
    book = ProviderBook(time.time)
    challenger = Challenger(identity(), None, book)  # type: ignore[arg-type]
    first = gpu_advert(who, {"bf16": 700.0}, gpus=4, free=2)
    assert book.accept(first)
    assert challenger.observe(first, new=True)
    challenger.pending.clear()
    challenger.challenged[who.address] = ({"bf16": 700.0}, 2)  # as its challenge was sized
    same = gpu_advert(who, {"bf16": 700.0}, gpus=4, free=1, seq=2)
    assert not challenger.observe(same, new=False)
    assert challenger.observe(gpu_advert(who, {"bf16": 800.0}, gpus=4, free=1, seq=3), False)
    challenger.pending.clear()
    assert challenger.observe(gpu_advert(who, {"bf16": 700.0}, gpus=4, free=4, seq=4), False)
    challenger.pending.clear()
    assert challenger.observe(same, new=True)  # back after leaving the book: afresh


@pytest.mark.timeout(60)
async def test_providers_are_challenged_again_at_random_times() -> None:
    challenger, _, book, clock, address = setup()
    gaps: list[float] = []

    def gap(rate: float) -> float:
        gaps.append(rate)
        return 500.0

    challenger.gap = gap
    challenger.interval_s = 1000.0
    challenger._plan(address)
    assert gaps == [1 / 1000.0] and challenger.due[address] == clock.now + 500.0
    assert challenger.due_now() == []
    clock.now += 500.0
    assert challenger.due_now() == [address] and address in challenger.pending
    assert address not in challenger.due
    challenger.pending.clear()
    challenger._plan(address)
    book.entries.pop(address)  # left the book: its plans go
    book.columns.remove(address)
    clock.now += 500.0
    assert challenger.due_now() == [] and address not in challenger.due


@pytest.mark.timeout(60)
async def test_a_provider_whose_adverts_show_its_gpus_taken_may_defer_for_as_long() -> None:
    who = identity()
    clock = Clock()
    book = ProviderBook(time.time)
    assert book.accept(gpu_advert(who, {"bf16": 0.02}, gpus=2, free=0))  # jobs hold both
    responder = HonestResponder(who, clock)
    responder.busy = 3 * MAX_BUSY
    challenger = Challenger(identity(), responder, book, n=16, target_s=0.01, clock=clock)
    for _ in range(2 * MAX_BUSY):
        assert await challenger.challenge(who.address) is None
    assert book.entries[who.address].checks == {}  # deferred, never failed
    challenger._plan(who.address)
    assert challenger.due[who.address] == clock.now + challenger.retry_s
    # Its advert shows a GPU free again: busy answers now count.
    assert book.accept(gpu_advert(who, {"bf16": 0.02}, gpus=2, free=1, seq=2))
    for _ in range(MAX_BUSY):
        await challenger.challenge(who.address)
    assert not book.entries[who.address].checks["bf16"].passed
