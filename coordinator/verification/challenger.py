"""Benchmark challenges: checking what providers claim about their speed.

For each provider that joins the book (one at a time, in the background), the challenger
sends, for every dtype its advert claims, an exact per-dtype
:class:`~protocol.messages.Challenge` (``proofs.challenge.ExactChallenge``, sized by
:func:`proofs.challenge_check.size_exact_challenge` to about :data:`TARGET_S` of compute at
the claimed speed) on ``CHALLENGE_PROTOCOL``, times the round trip itself (the provider's
own figure is not trusted), picks rows to open only after the Merkle root is in, and judges
the openings with :func:`proofs.challenge_check.judge_exact` against
:func:`~proofs.challenge_check.exact_time_bound`. A pass
(correct rows within the claim's time bound) keeps the advertised figure of that dtype and
marks it verified, with its time; a wrong or missing row, or an answer later than the bound,
fails the dtype: its figure becomes zero until a later pass, which keeps the provider out of
every job that names a floor for it and last in every ranking.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import cast

import trio

from coordinator.matching.book import ProviderBook
from coordinator.tasks import contained
from coordinator.wire.transport import PeerTransport
from proofs.challenge import EXACT_MAX_FLOPS, ExactChallenge
from proofs.challenge_check import (
    ExactTiming,
    judge_exact,
    pick_exact_rows,
    size_exact_challenge,
)
from proofs.challenge_wire import from_opened_row, rows_to_open
from protocol.errors import MessageError
from protocol.identity import Identity
from protocol.ids import Address
from protocol.messages import (
    Challenge,
    ChallengeOpen,
    ChallengeResponse,
    ChallengeRows,
    Message,
    WireMessage,
)
from protocol.messages.advert import DTYPES, Dtype
from protocol.messages.challenge import LEAF_ROWS, MAX_INNER, MAX_OPENED_ROWS
from protocol.registry import CHALLENGE_PROTOCOL, MAX_MESSAGE_BYTES
from protocol.signing import Verifier, decode_signed, encode_signed, sign_message

log = logging.getLogger(__name__)

TARGET_S = 1.5
"""Aim for this much compute at the advertised speed, so compute dominates the overheads
(providers accept about 3 s at their own claim)."""
SLACK = 1.4
"""The bound's factor on the compute time at the claim: below 2, so a 2x spoofer misses it."""
ALLOWANCE_S = 0.5
"""Round trip, signing, input generation and thread hand-offs, on top of the compute."""
DEFAULT_SIDE = 4096
"""m of a challenge: GPU-sized. k is always the exactness limit of 4096, so compute (2 k
flops an output entry) outweighs the device's digest (a few dozen integer operations an
entry) even on a CPU with a small m."""
TIMEOUT_S = 120.0


class Challenger:
    """Challenges providers one at a time from a bounded queue holding each at most once."""

    def __init__(
        self,
        identity: Identity,
        transport: PeerTransport,
        book: ProviderBook,
        *,
        n: int = DEFAULT_SIDE,
        max_flops: float = EXACT_MAX_FLOPS,
        target_s: float = TARGET_S,
        allowance_s: float = ALLOWANCE_S,
        max_queued: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = identity
        self.transport = transport
        self.book = book
        self.n = n
        """m of every challenge (k is 4096). Tests and devnets set it small."""
        self.max_flops = max_flops
        self.target_s = target_s
        """Compute per challenge at the claimed speed (tests and devnets set it small)."""
        """Challenges never ask for more (fewer reps) whatever the claim."""
        self.clock = clock
        """Times each challenge, seed sent to root received."""
        self.terms = ExactTiming(slack=SLACK, allowance_s=allowance_s)
        self.verifier = Verifier()
        self.results: dict[str, bool] = {}
        """Per provider: whether every dtype it claims passed its latest challenge."""
        self.dtype_results: dict[tuple[str, Dtype], bool] = {}
        self.refused = 0
        """Challenges not queued because the queue was full."""
        self.pending: set[str] = set()
        """Providers queued or being challenged: never two challenges for one advertiser."""
        self._send, self._receive = trio.open_memory_channel[str](max_queued)

    def enqueue(self, address: str) -> bool:
        """Queue a challenge of ``address``; False when one is already pending or the queue
        is full."""
        if address in self.pending:
            return False
        try:
            self._send.send_nowait(address)
        except trio.WouldBlock:
            self.refused += 1
            log.warning("challenge queue full; %s not challenged now", address)
            return False
        self.pending.add(address)
        return True

    async def run(self) -> None:
        async for address in self._receive:
            try:
                with contained(log, f"challenge of {address} not completed"):
                    await self.challenge(address)
            finally:
                self.pending.discard(address)

    async def _call(self, address: str, body: Message) -> WireMessage:
        advert = self.book.find(address)
        if advert is None:
            raise MessageError(f"{address} left the book")
        payload = encode_signed(sign_message(body, self.identity))
        raw = await self.transport.request(
            advert.peer_id, advert.multiaddrs, CHALLENGE_PROTOCOL, payload, TIMEOUT_S
        )
        return self.verifier.open(
            decode_signed(raw, MAX_MESSAGE_BYTES), WireMessage, signer=Address(address)
        )

    async def challenge(self, address: str) -> bool | None:
        """Challenge one provider on every dtype its advert claims; True when all pass,
        False when any fails, None when there was nothing to challenge."""
        advert = self.book.find(address)
        if advert is None:
            return None
        claims = {d: float(advert.benchmark.tflops.get(d, 0.0)) for d in DTYPES}
        outcomes = []
        for dtype, advertised in claims.items():
            if advertised > 0:
                outcomes.append(await self.challenge_dtype(address, dtype, advertised))
        if not outcomes:
            return None
        self.results[address] = all(outcomes)
        return self.results[address]

    def size(self, dtype: Dtype, advertised: float) -> ExactChallenge:
        """A fresh challenge of about ``target_s`` at the ``advertised`` TFLOPS. A claim too
        slow for one product of ``n`` rows in that time gets narrower products (whole
        leaves of rows), so a small CPU claim is not asked for many times its target."""
        m, k = self.n, MAX_INNER
        if m > LEAF_ROWS:
            fit = math.sqrt(self.target_s * advertised * 1e12 / (2 * k))
            m = max(LEAF_ROWS, min(m, int(fit) // LEAF_ROWS * LEAF_ROWS))
        ch = size_exact_challenge(os.urandom(32), dtype, advertised, self.target_s, m=m, k=k)
        if ch.flops > self.max_flops:
            reps = max(1, int(self.max_flops // (2 * m * m * k)))
            ch = ExactChallenge(ch.seed, dtype, m=m, k=k, reps=reps)
        return ch

    async def challenge_dtype(self, address: str, dtype: Dtype, advertised: float) -> bool:
        """One timed challenge of the ``advertised`` TFLOPS on ``dtype``; the verdict."""
        ch = self.size(dtype, advertised)
        message = Challenge(
            challenge_id=os.urandom(16),
            coordinator=self.identity.address,
            provider=Address(address),
            seed=ch.seed,
            dtype=dtype,
            m=ch.m,
            k=ch.k,
            reps=ch.reps,
            deadline=int(time.time() + TIMEOUT_S),
        )
        started = self.clock()
        response = await self._call(address, message)
        elapsed = self.clock() - started
        if (
            not isinstance(response, ChallengeResponse)
            or response.challenge_id != message.challenge_id
        ):
            return await self._verdict(address, dtype, advertised, False, "no challenge response")
        picks = pick_exact_rows(ch, response.merkle_root, os.urandom(32), MAX_OPENED_ROWS)
        opened = await self._call(
            address,
            cast(
                Message,
                ChallengeOpen(
                    challenge_id=message.challenge_id,
                    coordinator=self.identity.address,
                    rows=rows_to_open(ch, picks),
                ),
            ),
        )
        if not isinstance(opened, ChallengeRows):
            return await self._verdict(address, dtype, advertised, False, "rows not opened")
        openings = [from_opened_row(ch, r) for r in opened.rows]
        verdict = await trio.to_thread.run_sync(
            lambda: judge_exact(
                ch, advertised, response.merkle_root, elapsed, picks, openings, self.terms
            )
        )
        return await self._verdict(
            address, dtype, advertised, verdict.passed, "; ".join(verdict.reasons)
        )

    async def _verdict(
        self, address: str, dtype: Dtype, advertised: float, passed: bool, why: str
    ) -> bool:
        self.dtype_results[(address, dtype)] = passed
        # A pass keeps the claim and marks it verified now; a fail zeroes it until a pass.
        self.book.set_measured(address, dtype, advertised if passed else 0.0)
        if passed:
            log.info(
                "provider %s passed its %s challenge at %.3g TFLOPS", address, dtype, advertised
            )
        else:
            log.warning("provider %s failed its %s challenge: %s", address, dtype, why)
        return passed
