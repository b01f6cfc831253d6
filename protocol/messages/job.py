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


Seat = Annotated[StrictInt, Field(ge=0, lt=8)]
Uint64 = Annotated[StrictInt, Field(ge=0, lt=2**64)]


class JobOffer(WireMessage):
    """Asks a provider to take a seat of a job, before anything is locked on chain.

    The provider answers with a :class:`~protocol.messages.result.Accept` carrying its signed
    EIP-712 consent (which the market's ``assign`` verifies) or a
    :class:`~protocol.messages.result.Decline` saying why not. The job's terms are read from
    the chain by the provider, never from this message.
    """

    AUTHOR_FIELD: ClassVar[str | None] = "coordinator"

    type: Literal["job.offer"] = "job.offer"
    job_id: JobIdField
    provider: AddressField
    coordinator: AddressField
    seat: Seat
    price: WeiField
    """The most the seat can earn; stake_factor x price is locked while the job runs."""
    rate_per_hour: WeiField
    expiry: Timestamp
    """The consent is valid on chain until this block time."""
    spec_cid: CidField
    gpus: Annotated[StrictInt, Field(ge=0, le=64)] = 0


class Assignment(WireMessage):
    """Tells a provider it was assigned a job on chain, and what to fetch and by when."""

    AUTHOR_FIELD: ClassVar[str | None] = "coordinator"

    type: Literal["job.assignment"] = "job.assignment"
    job_id: JobIdField
    provider: AddressField
    coordinator: AddressField
    seat: Seat = 0
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
