"""Background tasks contain what one item raises: a provider that answers a benchmark
challenge with garbage fails it and the challenger goes on with the next provider; a
settlement batch that crashes answers its waiters and the batcher takes the next one."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import pytest
import trio
from eth_account import Account

from contracts.models import JobStatus, Settlement
from coordinator.chain.settlement import Settler
from coordinator.matching.book import ProviderBook
from coordinator.verification.challenger import Challenger
from protocol.identity import Identity
from protocol.ids import JobId, PeerId
from protocol.messages import (
    Challenge,
    ChallengeOpen,
    ChallengeResponse,
    ChallengeRows,
    Message,
)
from protocol.messages.challenge import OpenedRow
from protocol.signing import decode_signed, encode_signed, sign_message
from tests.coordinator.factories import cpu_advert


def identity() -> Identity:
    return Identity.from_private_key(bytes(Account.create().key))


class GarbageProvider:
    """Answers challenges: a root, then rows of the wrong length with no proofs; the
    provider named ``crashing`` makes the transport itself fail with a foreign error."""

    def __init__(self, providers: dict[str, Identity], crashing: str) -> None:
        self.by_peer = {p.peer_id: p for p in providers.values()}
        self.crashing = crashing
        self.requests = 0

    async def request(
        self,
        peer: PeerId,
        multiaddrs: Sequence[str],
        protocol_id: str,
        payload: bytes,
        timeout_s: float,
    ) -> bytes:
        self.requests += 1
        who = self.by_peer[peer]
        if who.address == self.crashing:
            raise TypeError("the transport broke in a way nobody planned for")
        body = decode_signed(payload).body
        reply: Message
        if isinstance(body, Challenge):
            reply = ChallengeResponse(
                challenge_id=body.challenge_id,
                provider=who.address,
                merkle_root=b"\x07" * 32,
                elapsed_s=0.5,
            )
        else:
            assert isinstance(body, ChallengeOpen)
            rows = tuple(
                OpenedRow(
                    index=10**6 + i,
                    values=b"\x01" * 64,
                    digests=b"\x03" * 128,
                    proof=(b"\x02" * 32,) * 20,
                )
                for i in body.rows
            )
            reply = ChallengeRows(challenge_id=body.challenge_id, provider=who.address, rows=rows)
        return encode_signed(sign_message(reply, who))


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r}"
        self.lines.append(text)


@pytest.mark.timeout(60)
async def test_garbage_answers_fail_the_challenge_and_the_challenger_goes_on() -> None:
    providers = {name: identity() for name in ("garbage", "crashing", "last")}
    book = ProviderBook(time.time)
    for who in providers.values():
        book.accept(cpu_advert(who, {"fp32": 0.01}))
    transport = GarbageProvider(providers, crashing=providers["crashing"].address)
    challenger = Challenger(identity(), transport, book, n=16, target_s=0.01)
    for name in ("garbage", "crashing", "last"):
        challenger.enqueue(providers[name].address)
    logged = Recorder()
    logger = logging.getLogger("coordinator.verification.challenger")
    logger.addHandler(logged)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(challenger.run)
            while providers["last"].address not in challenger.results:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    logger.removeHandler(logged)
    assert challenger.results[providers["garbage"].address] is False
    assert challenger.results[providers["last"].address] is False
    assert providers["crashing"].address not in challenger.results
    slot = book.columns.slot(providers["garbage"].address)
    assert slot is not None and book.columns.tflops[slot, 0] == 0.0
    assert any("transport broke" in line for line in logged.lines), logged.lines


class CrashingChain:
    """Reading a job's status fails with a foreign error the first time only."""

    def __init__(self) -> None:
        self.calls = 0

    async def job_status(self, job_id: bytes) -> tuple[JobStatus, int]:
        self.calls += 1
        if self.calls == 1:
            raise KeyError("a reply shaped like nothing expected")
        return JobStatus.SETTLED, 2


@pytest.mark.timeout(30)
async def test_a_crashing_settlement_answers_its_waiter_and_the_batcher_goes_on() -> None:
    settler = Settler(CrashingChain(), window_s=0.0)  # type: ignore[arg-type]
    settlement = Settlement(job_id=JobId(b"\x01" * 32), seats=(), entries=())
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(settler.run)
            first = await settler.settle(settlement)
            second = await settler.settle(settlement)
            nursery.cancel_scope.cancel()
    assert not first.ok and "KeyError" in (first.error or "")
    assert second.ok and second.already_settled
