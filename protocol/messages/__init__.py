"""Wire messages, one module per family, and decoding of any message by its ``type`` tag.

=====================  ==========================  ==============================
family                 messages                    signed by
=====================  ==========================  ==============================
``advert``             Advert                      provider
``job.*`` (job)        JobOffer, Assignment,       coordinator
                       RevealRequest, Cancel
``job.*`` (result)     Accept, Decline,            provider (+ EIP-712 inside)
                       Commitment, Reveal
``job.commit_receipt`` CommitReceipt               coordinator (+ EIP-712 inside)
``job.*`` (report)     LogChunk, HandBack,         provider
                       FailureReport
``challenge.*``        Challenge, ChallengeOpen    coordinator
                       ChallengeResponse,          provider
                       ChallengeRows
``reply.*``            Ack, ErrorReply             whoever answers
=====================  ==========================  ==============================
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

from protocol.encoding import decode_json, encode_model
from protocol.errors import MessageError
from protocol.messages.advert import Advert, Benchmark, Fingerprint, GpuInfo
from protocol.messages.base import WireMessage
from protocol.messages.challenge import (
    Challenge,
    ChallengeOpen,
    ChallengeResponse,
    ChallengeRows,
    OpenedRow,
)
from protocol.messages.job import Assignment, Cancel, JobOffer, RevealRequest
from protocol.messages.reply import Ack, ErrorCode, ErrorReply
from protocol.messages.report import FailureKind, FailureReport, HandBack, LogChunk
from protocol.messages.result import Accept, Commitment, CommitReceipt, Decline, Reveal
from protocol.registry import MAX_MESSAGE_BYTES

Message = Annotated[
    Advert
    | JobOffer
    | Accept
    | Decline
    | CommitReceipt
    | Assignment
    | RevealRequest
    | Cancel
    | Commitment
    | Reveal
    | LogChunk
    | HandBack
    | FailureReport
    | Challenge
    | ChallengeResponse
    | ChallengeOpen
    | ChallengeRows
    | Ack
    | ErrorReply,
    Field(discriminator="type"),
]
"""Any wire message; decoding picks the class by ``type``."""

MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)

M = TypeVar("M", bound=WireMessage)


def validation_message(exc: ValidationError) -> str:
    """One line per problem, each naming its dotted field path."""
    problems = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(part) for part in err["loc"]) or "<message>"
        problems.append(f"{path}: {err['msg']}")
    return "; ".join(problems)


def message_from_obj(obj: object) -> Message:
    """Validate an already-parsed JSON object as a wire message."""
    try:
        return MESSAGE_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise MessageError(f"invalid message: {validation_message(exc)}") from exc


def decode_message(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode and validate untrusted bytes; raise ``MessageError`` saying what is wrong."""
    return message_from_obj(decode_json(data, max_bytes))


def decode_as(cls: type[M], data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> M:
    """Decode bytes that must hold a message of class ``cls``."""
    message = decode_message(data, max_bytes)
    if not isinstance(message, cls):
        raise MessageError(f"expected {cls.__name__}, got {type(message).__name__}")
    return message


def encode_message(message: WireMessage) -> bytes:
    """Canonical bytes of a message."""
    return encode_model(message)


__all__ = [
    "Accept",
    "Ack",
    "Advert",
    "Assignment",
    "Benchmark",
    "Cancel",
    "Challenge",
    "ChallengeOpen",
    "ChallengeResponse",
    "ChallengeRows",
    "CommitReceipt",
    "Commitment",
    "Decline",
    "ErrorCode",
    "ErrorReply",
    "FailureKind",
    "FailureReport",
    "Fingerprint",
    "GpuInfo",
    "HandBack",
    "JobOffer",
    "LogChunk",
    "Message",
    "OpenedRow",
    "Reveal",
    "RevealRequest",
    "WireMessage",
    "decode_as",
    "decode_message",
    "encode_message",
    "message_from_obj",
]
