"""The provider's side of ``CHALLENGE_PROTOCOL``: exact per-dtype challenges and openings.

A :class:`Challenge` message is mapped onto :class:`proofs.challenge.ExactChallenge` by
:mod:`proofs.challenge_wire` (the mapping the coordinator uses too) and computed with
:func:`proofs.challenge.device_row_digests` on as many devices as it names, at once: the
GPUs this provider advertises free (a CPU provider: its one device). The devices are held
for the timed part (:func:`device_hold`: no job starts on them, no warm sandbox stays on
them); when fewer are free than asked, because jobs took them since the last advert, the
answer is "busy", and the coordinator asks again later. Every product and its row digests
stay on the device and only 8 bytes a row reach the host, which builds the Merkle tree;
the answer is the root and the elapsed time. The work is kept (bounded, briefly) for the
:class:`ChallengeOpen` that follows, whose rows are recomputed on the device that made them.

Bounds: a challenge may ask each device for about :data:`WORK_S` seconds of work at this
provider's own claim for the dtype (at least ``min_flops``); a dtype it does not claim is
refused; each coordinator gets at most ``rate_max`` challenges per ``rate_window_s``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, cast

import trio

from proofs import challenge as proof
from proofs.challenge_wire import challenge_from_wire, rep_row, to_opened_row
from protocol.clock import SYSTEM_CLOCK, Clock
from protocol.errors import GpuMarketError, MessageError
from protocol.identity import Identity, address_from_peer_id
from protocol.ids import PeerId
from protocol.messages import (
    Challenge,
    ChallengeOpen,
    ChallengeResponse,
    ChallengeRows,
    ErrorCode,
    ErrorReply,
    Message,
)
from protocol.messages.advert import Dtype
from protocol.signing import Verifier, decode_signed, encode_signed, sign_message
from provider_node.gpus import GpuPool

log = logging.getLogger(__name__)

KEPT_CHALLENGES = 4
KEEP_S = 300.0
WORK_S = 3.0
"""A challenge may take about this long at this provider's own claimed speed."""
MIN_FLOPS = 2e11
"""Always accepted (one product of a large shape at a CPU-sized claim)."""
UNCLAIMED_MAX_FLOPS = 2e12
"""The bound on every dtype when the server is given no claims (a CPU manages this in tens
of seconds)."""
RATE_MAX = 8
RATE_WINDOW_S = 60.0
MAX_TRACKED_COORDINATORS = 1024

Respond = Callable[[proof.ExactChallenge, Sequence[str]], proof.ExactWork]
"""``respond(challenge, devices)``: the timed work
(:func:`proofs.challenge.device_row_digests`), one device per share."""
DeviceHold = Callable[[int], AbstractAsyncContextManager[Sequence[str]]]
"""``hold(count)``: ``count`` devices (torch names) held for a timed challenge while
inside; raises ``MessageError`` ("busy: ...") when fewer are free."""
Pause = Callable[[Sequence[int]], AbstractAsyncContextManager[None]]
"""``pause(gpus)``: no warm sandbox on ``gpus`` and no warming while inside."""


def device_hold(gpus: GpuPool, cpu_device: str = "cpu", pause: Pause | None = None) -> DeviceHold:
    """Challenge devices from ``gpus``: that many free GPUs, taken from the pool (so no job
    starts on them) and paused in the warm pool for the timed part. A host without GPUs
    has one device, ``cpu_device``."""

    @asynccontextmanager
    async def hold(count: int) -> AsyncIterator[Sequence[str]]:
        paused = pause or (lambda _: nullcontext())
        if not gpus.devices:
            if count != 1:
                raise MessageError(f"challenge asks for {count} devices; this host has one")
            async with paused(()):
                yield (cpu_device,)
            return
        taken = gpus.acquire(count)
        if taken is None:
            raise MessageError(
                f"busy: the challenge asks for {count} GPUs and {gpus.free} are free "
                "(jobs hold the others); retry later"
            )
        try:
            async with paused(taken):
                yield tuple(f"cuda:{i}" for i in taken)
        finally:
            gpus.release(taken)

    return hold


class ChallengeServer:
    """Answers challenges from coordinators, one at a time."""

    def __init__(
        self,
        identity: Identity,
        *,
        hold: DeviceHold | None = None,
        claims: Mapping[Dtype, float] | None = None,
        work_s: float = WORK_S,
        min_flops: float = MIN_FLOPS,
        rate_max: int = RATE_MAX,
        rate_window_s: float = RATE_WINDOW_S,
        respond: Respond | None = None,
        verifier: Verifier | None = None,
        clock: Clock = SYSTEM_CLOCK,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = identity
        self.hold = hold or device_hold(GpuPool(()))
        """Entered around each timed challenge: its devices, for the challenge alone."""
        self.claims: dict[str, float] | None = (
            None if claims is None else {str(d): float(v) for d, v in claims.items()}
        )
        """Advertised TFLOPS per dtype; None bounds every dtype by :data:`UNCLAIMED_MAX_FLOPS`."""
        self.work_s = work_s
        self.min_flops = min_flops
        self.rate_max = rate_max
        self.rate_window_s = rate_window_s
        self._respond: Respond = respond or (
            lambda ch, devices: proof.device_row_digests(ch, devices)
        )
        self.verifier = verifier or Verifier(clock)
        self.clock = clock
        self.monotonic = monotonic
        self._lock = trio.Lock()
        self._kept: OrderedDict[bytes, tuple[float, proof.ExactWork, str]] = OrderedDict()
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()

    def max_flops(self, dtype: str) -> float:
        """The most work one challenge of ``dtype`` may ask of each device (0: refused)."""
        if self.claims is None:
            return UNCLAIMED_MAX_FLOPS
        claim = float(self.claims.get(dtype, 0.0))
        if claim <= 0:
            return 0.0
        return max(self.min_flops, self.work_s * claim * 1e12)

    async def handle(self, request: bytes, peer: PeerId) -> bytes:
        """The ``CHALLENGE_PROTOCOL`` handler."""
        of: str | None = None
        try:
            signed = decode_signed(request)
            of = signed.body.message_type
            # The challenger must be the peer on the stream, so nobody relays challenges.
            signer = address_from_peer_id(peer)
            body = signed.body
            if isinstance(body, Challenge):
                self.verifier.open(signed, Challenge, signer=signer)
                reply: Any = await self._on_challenge(body)
            elif isinstance(body, ChallengeOpen):
                self.verifier.open(signed, ChallengeOpen, signer=signer)
                reply = await self._on_open(body)
            else:
                raise MessageError(f"{of} is not a challenge request")
        except GpuMarketError as exc:
            log.info("refused %s from %s: %s", of or "a challenge request", peer, exc)
            code = ErrorCode.BUSY if "busy" in str(exc) else ErrorCode.MALFORMED
            reply = ErrorReply(
                sender=self.identity.address, code=code, message=str(exc)[:1000], of=of
            )
        return encode_signed(sign_message(cast(Message, reply), self.identity))

    def _admit(self, coordinator: str) -> None:
        """Count a challenge from ``coordinator``; refuse past ``rate_max`` a window."""
        now = self.monotonic()
        times = self._recent.pop(coordinator, None) or deque()
        while times and now - times[0] > self.rate_window_s:
            times.popleft()
        if len(times) >= self.rate_max:
            self._recent[coordinator] = times
            raise MessageError(
                f"busy: {coordinator} sent {len(times)} challenges in "
                f"{self.rate_window_s:.0f}s (at most {self.rate_max}); retry later"
            )
        times.append(now)
        self._recent[coordinator] = times
        while len(self._recent) > MAX_TRACKED_COORDINATORS:
            self._recent.popitem(last=False)

    async def _on_challenge(self, msg: Challenge) -> ChallengeResponse:
        if msg.provider != self.identity.address:
            raise MessageError(f"challenge is for {msg.provider}")
        if msg.deadline < self.clock.now():
            raise MessageError("challenge deadline has passed")
        ch = challenge_from_wire(msg)
        bound = self.max_flops(ch.dtype)
        if bound <= 0:
            raise MessageError(f"this provider claims no {ch.dtype} speed to challenge")
        if ch.device_flops > bound:
            raise MessageError(
                f"challenge of {ch.device_flops:.3g} {ch.dtype} flops a device exceeds this "
                f"provider's bound of {bound:.3g} (about {self.work_s:g}s at its claim)"
            )
        if self._lock.locked():
            raise MessageError("busy with another challenge")
        self._admit(msg.coordinator)
        async with self._lock, self.hold(ch.devices) as devices:
            work = await trio.to_thread.run_sync(lambda: self._respond(ch, devices))
        self._keep(msg.challenge_id, work, msg.coordinator)
        return ChallengeResponse(
            challenge_id=msg.challenge_id,
            provider=self.identity.address,
            merkle_root=work.root,
            elapsed_s=max(work.elapsed_s, 1e-9),
        )

    def _keep(self, challenge_id: bytes, work: proof.ExactWork, coordinator: str) -> None:
        now = time.monotonic()
        self._kept[challenge_id] = (now, work, coordinator)
        while len(self._kept) > KEPT_CHALLENGES:
            self._kept.popitem(last=False)
        for key in [k for k, (at, _, _) in self._kept.items() if now - at > KEEP_S]:
            del self._kept[key]

    async def _on_open(self, msg: ChallengeOpen) -> ChallengeRows:
        kept = self._kept.get(msg.challenge_id)
        if kept is None or kept[2] != msg.coordinator:
            raise MessageError("no such challenge here (expired or never answered)")
        work = kept[1]
        ch = work.challenge
        picks = [rep_row(ch, index) for index in msg.rows]
        # Opened rows are recomputed on the devices that made them (untimed: a job may
        # hold them by now, which changes no bit of a product).
        async with self._lock:
            openings = await trio.to_thread.run_sync(lambda: work.open(picks))
        rows = tuple(to_opened_row(ch, o) for o in openings)
        return ChallengeRows(
            challenge_id=msg.challenge_id, provider=self.identity.address, rows=rows
        )
