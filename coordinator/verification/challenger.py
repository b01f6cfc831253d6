"""Benchmark challenges: checking what providers claim about their speed.

For each provider in the book (one at a time, in the background), the challenger sends, for
every dtype its advert claims, an exact per-dtype :class:`~protocol.messages.Challenge`
(``proofs.challenge.ExactChallenge``, sized by
:func:`proofs.challenge_check.size_exact_challenge` to about :data:`TARGET_S` of compute a
device at the claimed per-GPU speed) on ``CHALLENGE_PROTOCOL``, split over every GPU the
advert says is free, computing at once, so one real GPU cannot pass as several. It times
the round trip itself (the provider's own figure is not trusted), picks rows to open only
after the Merkle root is in, and judges the openings with
:func:`proofs.challenge_check.judge_exact` against
:func:`~proofs.challenge_check.exact_time_bound`. A pass (correct rows within the claim's
time bound) keeps the advertised figure of that dtype and marks it verified, with its time;
a wrong or missing row, or an answer later than the bound, fails the dtype: its figure
becomes zero until a later pass, which keeps the provider out of every job that names a
floor for it and last in every ranking. The verdicts are the book's
:class:`~coordinator.matching.book.SpeedCheck` records.

When: a provider is challenged when it joins the book, when an advert changes a claimed
figure or offers more free GPUs than its last challenge ran on, and again at random times
(exponential gaps of mean ``interval_s``, drawn from the OS's randomness, so a provider
cannot tell when to be honest). A provider that answers "busy" (jobs took the GPUs its
advert showed free, or it is rate-limiting) is asked again after ``retry_s``; after
:data:`MAX_BUSY` busy answers in a row while its latest advert shows the GPUs free, the
dtype fails, as a GPU advertised free must answer (one whose adverts show them taken may
defer).
"""

from __future__ import annotations

import logging
import math
import os
import random
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
    ExactVerdict,
    judge_exact,
    pick_exact_rows,
    size_exact_challenge,
)
from proofs.challenge_wire import from_opened_row, rows_to_open
from protocol.errors import MessageError
from protocol.identity import Identity
from protocol.ids import Address
from protocol.messages import (
    Advert,
    Challenge,
    ChallengeOpen,
    ChallengeResponse,
    ChallengeRows,
    ErrorCode,
    ErrorReply,
    Message,
    WireMessage,
)
from protocol.messages.advert import DTYPES, Dtype
from protocol.messages.challenge import LEAF_ROWS, MAX_DEVICES, MAX_INNER, MAX_OPENED_ROWS
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
INTERVAL_S = 6 * 3600.0
"""Mean gap between a provider's random re-challenges."""
RETRY_S = 30.0
"""Wait before asking a provider that answered "busy" again."""
MAX_BUSY = 3
"""Busy answers in a row after which the dtype fails."""


class Busy(Exception):
    """The provider answered a challenge with "busy"."""


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
        interval_s: float = INTERVAL_S,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.monotonic,
        gap: Callable[[float], float] | None = None,
    ) -> None:
        self.identity = identity
        self.transport = transport
        self.book = book
        self.n = n
        """m of every challenge (k is 4096). Tests and devnets set it small."""
        self.max_flops = max_flops
        """Challenges never ask a device for more (fewer reps) whatever the claim."""
        self.target_s = target_s
        """Compute per challenge at the claimed speed (tests and devnets set it small)."""
        self.interval_s = interval_s
        """Mean gap between random re-challenges of a provider (0: none)."""
        self.retry_s = retry_s
        self.clock = clock
        """Times each challenge, seed sent to root received, and schedules the next."""
        self.gap = gap or random.SystemRandom().expovariate
        """``gap(rate)``: the wait before a provider's next random challenge."""
        self.terms = ExactTiming(slack=SLACK, allowance_s=allowance_s)
        self.verifier = Verifier()
        self.results: dict[str, bool] = {}
        """Per provider: whether every dtype it claims passed its latest challenge."""
        self.dtype_results: dict[tuple[str, Dtype], bool] = {}
        self.refused = 0
        """Challenges not queued because the queue was full."""
        self.pending: set[str] = set()
        """Providers queued or being challenged: never two challenges for one advertiser."""
        self.due: dict[str, float] = {}
        """Per provider: when (``clock``) to challenge it next."""
        self.busy: dict[tuple[str, Dtype], int] = {}
        """Per provider and dtype deferred by a "busy" answer: how many such answers in a
        row count against it (:func:`owes_answer`)."""
        self.challenged: dict[str, tuple[dict[Dtype, float], int]] = {}
        """Per provider: the claims and device count its latest challenge was sized for."""
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

    def observe(self, advert: Advert, new: bool) -> bool:
        """An advert the book took: queue a challenge when the provider is ``new`` to the
        book, a claimed figure changed, or it offers more free GPUs than its last
        challenge ran on. True when queued."""
        last = self.challenged.get(advert.provider)
        if not new and last is not None:
            figures, devices = last
            if claims_of(advert) == figures and devices_of(advert) <= devices:
                return False
        return self.enqueue(advert.provider)

    def due_now(self) -> list[str]:
        """Queue every provider whose random re-challenge is due; forget those that left
        the book. The providers queued."""
        now = self.clock()
        queued = []
        for address, at in list(self.due.items()):
            if self.book.find(address) is None:
                self.forget(address)
            elif at <= now and self.enqueue(address):
                del self.due[address]
                queued.append(address)
        return queued

    def forget(self, address: str) -> None:
        """Drop the plans for a provider that left the book (it is challenged afresh if it
        comes back)."""
        self.due.pop(address, None)
        self.challenged.pop(address, None)
        for key in [key for key in self.busy if key[0] == address]:
            del self.busy[key]

    async def schedule(self) -> None:
        """Queue due re-challenges, once a second."""
        while True:
            self.due_now()
            await trio.sleep(1.0)

    async def run(self) -> None:
        async for address in self._receive:
            try:
                with contained(log, f"challenge of {address} not completed"):
                    await self.challenge(address)
            finally:
                self.pending.discard(address)
                self._plan(address)

    def _plan(self, address: str) -> None:
        """Set when ``address`` is challenged next: soon when a dtype's answer was busy,
        else at a random time (when re-challenges are on)."""
        if self.book.find(address) is None:
            self.forget(address)
        elif any(a == address for a, _ in self.busy):
            self.due[address] = self.clock() + self.retry_s
        elif self.interval_s > 0:
            self.due[address] = self.clock() + self.gap(1.0 / self.interval_s)

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
        False when any fails, None when there was nothing to judge (no claim, or every
        answer was "busy")."""
        advert = self.book.find(address)
        if advert is None:
            return None
        claims = claims_of(advert)
        devices = devices_of(advert)
        self.challenged[address] = (claims, devices)
        outcomes = []
        for dtype, advertised in claims.items():
            try:
                outcomes.append(await self.challenge_dtype(address, dtype, advertised, devices))
            except Busy as exc:
                count = self.busy.get((address, dtype), 0)
                if owes_answer(self.book.find(address), devices):
                    count += 1  # it shows the devices free yet will not use them
                if count < MAX_BUSY:
                    self.busy[(address, dtype)] = count
                    log.info("provider %s is busy for its %s challenge: %s", address, dtype, exc)
                    continue
                outcomes.append(
                    self._verdict(
                        address,
                        dtype,
                        advertised,
                        devices,
                        False,
                        f"answered {count} challenges in a row with busy while advertising "
                        f"{devices} free device(s): {exc}",
                    )
                )
        if not outcomes:
            return None
        self.results[address] = all(outcomes)
        return self.results[address]

    def size(self, dtype: Dtype, advertised: float, devices: int = 1) -> ExactChallenge:
        """A fresh challenge of about ``target_s`` a device at the ``advertised`` per-GPU
        TFLOPS on ``devices`` devices at once. A claim too slow for one product of ``n``
        rows in that time gets narrower products (whole leaves of rows), so a small CPU
        claim is not asked for many times its target."""
        m, k = self.n, MAX_INNER
        if m > LEAF_ROWS:
            fit = math.sqrt(self.target_s * advertised * 1e12 / (2 * k))
            m = max(LEAF_ROWS, min(m, int(fit) // LEAF_ROWS * LEAF_ROWS))
        ch = size_exact_challenge(
            os.urandom(32), dtype, advertised, self.target_s, m=m, k=k, devices=devices
        )
        if ch.device_flops > self.max_flops:
            reps = max(1, int(self.max_flops // (2 * m * m * k)))
            ch = ExactChallenge(ch.seed, dtype, m=m, k=k, reps=reps * devices, devices=devices)
        return ch

    async def challenge_dtype(
        self, address: str, dtype: Dtype, advertised: float, devices: int = 1
    ) -> bool:
        """One timed challenge of the ``advertised`` TFLOPS on ``dtype`` on ``devices``
        devices at once; the verdict. Raises :class:`Busy` when the provider says busy."""
        ch = self.size(dtype, advertised, devices)
        message = Challenge(
            challenge_id=os.urandom(16),
            coordinator=self.identity.address,
            provider=Address(address),
            seed=ch.seed,
            dtype=dtype,
            m=ch.m,
            k=ch.k,
            reps=ch.reps,
            devices=ch.devices,
            deadline=int(time.time() + TIMEOUT_S),
        )
        started = self.clock()
        response = await self._call(address, message)
        elapsed = self.clock() - started
        if isinstance(response, ErrorReply) and response.code == ErrorCode.BUSY:
            raise Busy(response.message)
        self.busy.pop((address, dtype), None)
        if (
            not isinstance(response, ChallengeResponse)
            or response.challenge_id != message.challenge_id
        ):
            why = response.message if isinstance(response, ErrorReply) else "no response"
            return self._verdict(
                address, dtype, advertised, devices, False, f"no challenge response: {why}"
            )
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
            return self._verdict(address, dtype, advertised, devices, False, "rows not opened")
        openings = [from_opened_row(ch, r) for r in opened.rows]

        def judge() -> tuple[ExactVerdict, float]:
            cpu = time.thread_time()
            verdict = judge_exact(
                ch, advertised, response.merkle_root, elapsed, picks, openings, self.terms
            )
            return verdict, time.thread_time() - cpu

        verdict, cpu_s = await trio.to_thread.run_sync(judge)
        log.debug(
            "verified %d opened rows of %s's %s challenge (m=%d, k=%d) in %.0f ms of CPU",
            len(openings),
            address,
            dtype,
            ch.m,
            ch.k,
            1e3 * cpu_s,
        )
        return self._verdict(
            address, dtype, advertised, devices, verdict.passed, "; ".join(verdict.reasons)
        )

    def _verdict(
        self, address: str, dtype: Dtype, advertised: float, devices: int, passed: bool, why: str
    ) -> bool:
        self.dtype_results[(address, dtype)] = passed
        self.busy.pop((address, dtype), None)
        self.book.record_check(
            address, dtype, passed=passed, tflops=advertised, devices=devices, reason=why
        )
        if passed:
            log.info(
                "provider %s passed its %s challenge at %.3g TFLOPS on %d device(s)",
                address,
                dtype,
                advertised,
                devices,
            )
        else:
            log.warning("provider %s failed its %s challenge: %s", address, dtype, why)
        return passed


def claims_of(advert: Advert) -> dict[Dtype, float]:
    """The per-GPU TFLOPS the advert claims, per dtype it claims."""
    return {
        d: float(advert.benchmark.tflops[d]) for d in DTYPES if advert.benchmark.tflops.get(d, 0)
    }


def owes_answer(advert: Advert | None, devices: int) -> bool:
    """Whether a "busy" answer to a challenge on ``devices`` devices counts against the
    provider: its latest advert shows that many GPUs free (a CPU host: always). A GPU host
    whose jobs took its GPUs since may defer as often as its adverts say so."""
    if advert is None:
        return False
    return not advert.gpus or advert.free_gpus >= devices


def devices_of(advert: Advert) -> int:
    """Devices a challenge runs on at once: every GPU the advert shows free (a CPU host and
    a host whose GPUs are all busy: one)."""
    return max(1, min(MAX_DEVICES, advert.free_gpus if advert.gpus else 1))
