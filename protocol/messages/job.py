"""Coordinator -> provider messages of the job protocol.

The coordinator signs these; a provider acts on them only when the signer is the
coordinator named in the job's on-chain record.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictInt, model_validator

from protocol.fields import (
    AddressField,
    CidField,
    JobIdField,
    LongText,
    NameStr,
    Timestamp,
    WeiField,
)
from protocol.messages.base import WireMessage

MAX_INPUTS = 64


class Assignment(WireMessage):
    """Tells a provider it was assigned a job on chain, and what to fetch and by when."""

    AUTHOR_FIELD: ClassVar[str | None] = "coordinator"

    type: Literal["job.assignment"] = "job.assignment"
    job_id: JobIdField
    provider: AddressField
    coordinator: AddressField
    price: WeiField
    spec_cid: CidField
    input_cids: Annotated[dict[NameStr, CidField], Field(max_length=MAX_INPUTS)]
    """Mount name -> CID of every input, path inputs already uploaded by the wallet."""
    seed: Annotated[StrictInt, Field(ge=0, lt=2**64)]
    """Given to the job as ``GPUMARKET_SEED``; equal for every replica of one job."""
    commit_deadline: Timestamp
    reveal_deadline: Timestamp

    @model_validator(mode="after")
    def _deadlines_ordered(self) -> Assignment:
        if self.reveal_deadline <= self.commit_deadline:
            raise ValueError("reveal_deadline must come after commit_deadline")
        return self


class RevealRequest(WireMessage):
    """Asks a provider to reveal its committed result (and publish its outputs)."""

    AUTHOR_FIELD: ClassVar[str | None] = "coordinator"

    type: Literal["job.reveal_request"] = "job.reveal_request"
    job_id: JobIdField
    provider: AddressField
    coordinator: AddressField
    reveal_deadline: Timestamp


class Cancel(WireMessage):
    """Tells a provider to stop work on a job (cancelled, replaced or already settled)."""

    AUTHOR_FIELD: ClassVar[str | None] = "coordinator"

    type: Literal["job.cancel"] = "job.cancel"
    job_id: JobIdField
    provider: AddressField
    coordinator: AddressField
    reason: LongText
