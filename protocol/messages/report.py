"""Provider -> coordinator reports while a job runs: logs, hand-backs, failures."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictBool, StrictInt

from protocol.fields import AddressField, JobIdField, LongText, RowBytes
from protocol.messages.base import WireMessage
from protocol.registry import MAX_LOG_CHUNK_BYTES


class LogChunk(WireMessage):
    """A slice of a job's stdout or stderr; ``offset`` counts bytes of that stream."""

    AUTHOR_FIELD: ClassVar[str | None] = "provider"

    type: Literal["job.log"] = "job.log"
    job_id: JobIdField
    provider: AddressField
    stream: Literal["stdout", "stderr"]
    offset: Annotated[StrictInt, Field(ge=0, lt=2**63)]
    data: Annotated[RowBytes, Field(max_length=MAX_LOG_CHUNK_BYTES)]
    final: StrictBool = False


class HandBack(WireMessage):
    """The provider gives an assignment back before committing (it cannot run it)."""

    AUTHOR_FIELD: ClassVar[str | None] = "provider"

    type: Literal["job.hand_back"] = "job.hand_back"
    job_id: JobIdField
    provider: AddressField
    reason: LongText


class FailureKind(StrEnum):
    """Why a job run failed; each kind is the job's fault or the provider's, never both."""

    BAD_INPUT = "bad_input"
    TIMEOUT = "timeout"
    OOM = "oom"
    NONZERO_EXIT = "nonzero_exit"
    SANDBOX_ERROR = "sandbox_error"
    OUTPUT_TOO_LARGE = "output_too_large"
    OUTPUT_REFUSED = "output_refused"
    """The outputs hold a special file or a link pointing outside them."""
    PIDS_LIMIT = "pids_limit"
    """The job hit its process-count limit."""
    KILLED = "killed"
    """A signal the sandbox did not send (not a timeout, memory or cancel) ended the job."""

    @property
    def provider_fault(self) -> bool:
        """True when the provider's side (not the job's code or data) failed."""
        # The sandbox signals a job only on timeout or cancel; any other kill came from the
        # host (its OOM killer, an operator), a job killing itself being the rare case.
        return self in (FailureKind.SANDBOX_ERROR, FailureKind.KILLED)


class FailureReport(WireMessage):
    """A run ended without a result."""

    AUTHOR_FIELD: ClassVar[str | None] = "provider"

    type: Literal["job.failure"] = "job.failure"
    job_id: JobIdField
    provider: AddressField
    kind: FailureKind
    detail: LongText
    exit_code: Annotated[StrictInt, Field(ge=-255, le=255)] | None = None
