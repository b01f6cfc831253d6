"""Generic replies on request/response streams."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from protocol.fields import AddressField, JobIdField, LongText, ShortText
from protocol.messages.base import WireMessage


class Ack(WireMessage):
    """The request was accepted; ``of`` names the request's message type."""

    AUTHOR_FIELD: ClassVar[str | None] = "sender"

    type: Literal["reply.ack"] = "reply.ack"
    sender: AddressField
    of: ShortText
    job_id: JobIdField | None = None


class ErrorCode(StrEnum):
    """Why a request was refused; receivers branch on the code, humans read ``message``."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    UNKNOWN_JOB = "unknown_job"
    NOT_ASSIGNED = "not_assigned"
    WRONG_STATE = "wrong_state"
    BUSY = "busy"
    UNSUPPORTED = "unsupported"
    INTERNAL = "internal"


class ErrorReply(WireMessage):
    """The request was refused."""

    AUTHOR_FIELD: ClassVar[str | None] = "sender"

    type: Literal["reply.error"] = "reply.error"
    sender: AddressField
    code: ErrorCode
    message: LongText
    of: ShortText | None = None
    job_id: JobIdField | None = None
