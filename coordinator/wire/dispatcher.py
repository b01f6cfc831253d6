"""Sending the job protocol to providers: JobOffer, Assignment, RevealRequest, Cancel.

Every request is a signed envelope from this coordinator; every reply must be a signed
envelope from the provider it was sent to, or it counts as a failure. Each call has a
deadline; a provider that does not answer in time is treated as silent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import trio

from coordinator.wire.transport import PeerTransport
from protocol.errors import GpuMarketError, MessageError, TransportError
from protocol.identity import Identity
from protocol.ids import Address, JobId, PeerId
from protocol.messages import (
    Accept,
    Ack,
    Assignment,
    Cancel,
    Decline,
    ErrorCode,
    ErrorReply,
    JobOffer,
    Message,
    Reveal,
    RevealRequest,
    WireMessage,
)
from protocol.registry import JOB_PROTOCOL, MAX_MESSAGE_BYTES
from protocol.signing import Verifier, decode_signed, encode_signed, sign_message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """A provider answered with an error reply (or its reply could not be trusted)."""

    code: str
    message: str

    @property
    def already_done(self) -> bool:
        """The provider already holds the job: a retried delivery, not a failure."""
        return self.code == ErrorCode.WRONG_STATE and "already" in self.message

    @property
    def busy(self) -> bool:
        """The provider has no free job slot right now: try again later."""
        return self.code == ErrorCode.BUSY


@dataclass(frozen=True)
class Target:
    address: Address
    peer_id: PeerId
    multiaddrs: tuple[str, ...]


class Dispatcher:
    def __init__(
        self, identity: Identity, transport: PeerTransport, *, timeout_s: float = 10.0
    ) -> None:
        self.identity = identity
        self.transport = transport
        self.timeout_s = timeout_s
        self.verifier = Verifier()

    async def _call(self, target: Target, body: Message, timeout_s: float) -> Message:
        payload = encode_signed(sign_message(body, self.identity))
        with trio.fail_after(timeout_s + 1):
            raw = await self.transport.request(
                target.peer_id, target.multiaddrs, JOB_PROTOCOL, payload, timeout_s
            )
        signed = decode_signed(raw, MAX_MESSAGE_BYTES)
        reply = self.verifier.open(signed, WireMessage, signer=target.address)
        return cast(Message, reply)

    async def offer(self, target: Target, offer: JobOffer) -> Accept | Decline | Refusal:
        """Offer a seat; the provider's Accept or Decline, else why no usable answer came.

        The Accept's EIP-712 signature is the caller's to check (it needs the job's terms).
        """
        try:
            reply = await self._call(target, offer, self.timeout_s)
        except (GpuMarketError, trio.TooSlowError) as exc:
            return Refusal("unreachable", _why(exc))
        if isinstance(reply, Accept | Decline):
            if reply.job_id != offer.job_id or reply.provider != target.address:
                return Refusal("malformed", f"{reply.message_type} names another job or provider")
            return reply
        if isinstance(reply, ErrorReply):
            return Refusal(str(reply.code), reply.message)
        return Refusal("malformed", f"expected an accept or a decline, got {reply.message_type}")

    async def assign(self, target: Target, assignment: Assignment) -> Refusal | None:
        """Deliver an assignment; None when acknowledged, else the refusal."""
        return await self._expect_ack(target, assignment)

    async def cancel(self, target: Target, job_id: JobId, reason: str) -> None:
        body = Cancel(
            job_id=job_id,
            provider=target.address,
            coordinator=self.identity.address,
            reason=reason[:1000],
        )
        refusal = await self._expect_ack(target, body)
        if refusal is not None:
            log.info(
                "cancel of %s at %s refused: %s", job_id.hex(), target.address, refusal.message
            )

    async def request_reveal(
        self, target: Target, job_id: JobId, reveal_deadline: int, timeout_s: float
    ) -> Reveal | Refusal:
        body = RevealRequest(
            job_id=job_id,
            provider=target.address,
            coordinator=self.identity.address,
            reveal_deadline=reveal_deadline,
        )
        try:
            reply = await self._call(target, body, timeout_s)
        except (GpuMarketError, trio.TooSlowError) as exc:
            return Refusal("unreachable", _why(exc))
        if (
            isinstance(reply, Reveal)
            and reply.job_id == job_id
            and reply.provider == target.address
        ):
            return reply
        if isinstance(reply, ErrorReply):
            return Refusal(str(reply.code), reply.message)
        return Refusal("malformed", f"expected a reveal, got {reply.message_type}")

    async def _expect_ack(self, target: Target, body: Assignment | Cancel) -> Refusal | None:
        try:
            reply = await self._call(target, body, self.timeout_s)
        except (GpuMarketError, trio.TooSlowError) as exc:
            return Refusal("unreachable", _why(exc))
        if isinstance(reply, Ack):
            return None
        if isinstance(reply, ErrorReply):
            return Refusal(str(reply.code), reply.message)
        return Refusal("malformed", f"expected an ack, got {reply.message_type}")


def _why(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    if isinstance(exc, MessageError | TransportError):
        return f"{type(exc).__name__}: {exc}"
    return str(exc)


def targets(slots: Sequence[tuple[str, str, tuple[str, ...]]]) -> list[Target]:
    return [Target(Address(a), PeerId(p), m) for a, p, m in slots]
