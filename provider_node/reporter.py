"""Sending signed reports to a job's coordinator on ``REPORT_PROTOCOL``.

A :class:`Reporter` signs each message with the provider's key and delivers it to one
coordinator peer, returning the coordinator's signed answer (a ``CommitReceipt`` for a
commitment, an ``Ack`` for the rest). :func:`deliver` retries with backoff until a deadline
(for commitments and failure reports, which must arrive); :func:`try_send` makes one
attempt (for log chunks, which may be lost).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import trio

from protocol.errors import GpuMarketError, MessageError, TransportError
from protocol.identity import Identity
from protocol.ids import PeerId
from protocol.messages import ErrorReply, Message
from protocol.p2p.errors import RemoteError
from protocol.p2p.host import Node
from protocol.p2p.rpc_client import request
from protocol.p2p.rpc_wire import Limits, Status
from protocol.registry import MAX_MESSAGE_BYTES, REPORT_PROTOCOL
from protocol.signing import decode_signed, encode_signed, sign_message

log = logging.getLogger(__name__)

REPORT_LIMITS = Limits(
    max_request_bytes=MAX_MESSAGE_BYTES, max_response_bytes=64 * 1024, timeout_s=10.0
)


class ReportRefused(TransportError):
    """The coordinator answered a report with an error reply."""


class Reporter(Protocol):
    """Delivers provider reports to one coordinator."""

    async def send(self, body: Message) -> Message | None:
        """One attempt; returns the answer (None for a bare status reply), raises
        ``TransportError`` when it fails and ``ReportRefused`` for an error reply."""
        ...


class P2PReporter:
    """:class:`Reporter` over a libp2p node."""

    def __init__(self, node: Node, identity: Identity, peer: PeerId) -> None:
        self.node = node
        self.identity = identity
        self.peer = peer

    async def send(self, body: Message) -> Message | None:
        signed = sign_message(body, self.identity)
        reply = await request(
            self.node, self.peer, REPORT_PROTOCOL, encode_signed(signed), REPORT_LIMITS
        )
        if not reply:
            return None
        try:
            answer = decode_signed(reply).body
        except MessageError:
            return None  # a bare status reply is an acceptance too
        if isinstance(answer, ErrorReply):
            raise ReportRefused(f"{body.message_type} refused: {answer.code}: {answer.message}")
        # The envelope's signature is not checked here: whoever needs the answer checks
        # what it carries (a CommitReceipt's EIP-712 signature, see worker.py).
        return answer


@dataclass(frozen=True)
class Delivered:
    """A report the coordinator accepted, and its answer (None for a bare status)."""

    reply: Message | None


async def try_send(reporter: Reporter, body: Message) -> bool:
    """One attempt that never raises; False when it failed (logged)."""
    try:
        await reporter.send(body)
    except GpuMarketError as exc:
        log.warning("sending %s failed: %s", body.message_type, exc)
        return False
    return True


async def deliver(
    reporter: Reporter,
    body: Message,
    *,
    attempts: int = 8,
    first_delay_s: float = 0.5,
    max_delay_s: float = 15.0,
) -> Delivered | None:
    """Send ``body`` until it is accepted or ``attempts`` run out; None when it was not.

    A refusal (error reply) is final: sending the same message again would not change it.
    """
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return Delivered(await reporter.send(body))
        except ReportRefused as exc:
            log.warning("%s", exc)
            return None
        except RemoteError as exc:
            if exc.code in (Status.BAD_REQUEST, Status.REFUSED):
                log.warning("%s was refused: %s", body.message_type, exc.reason)
                return None
            log.info("sending %s failed (try %d/%d): %s", body.message_type, attempt, attempts, exc)
        except GpuMarketError as exc:
            log.info("sending %s failed (try %d/%d): %s", body.message_type, attempt, attempts, exc)
        if attempt < attempts:
            await trio.sleep(delay)
            delay = min(max_delay_s, delay * 2)
    return None
