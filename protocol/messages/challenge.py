"""Benchmark challenges: a timed, seeded exact matmul whose output rows are opened afterwards.

Flow: the coordinator sends :class:`Challenge` (the parameters of
``proofs.challenge.ExactChallenge``); the provider computes every product and its row
digests on its device, commits to the Merkle root over leaves of row digests and reports
the elapsed time in :class:`ChallengeResponse`; only then does the coordinator pick rows to
open (:class:`ChallengeOpen`) and the provider sends each row's values, the digests under
its leaf and the leaf's Merkle proof (:class:`ChallengeRows`). The inputs, row digest and
tree are defined in ``proofs.challenge``; these bounds mirror its limits.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from protocol.fields import AddressField, Bytes16, Bytes32, NonNegFloat, RowBytes, Timestamp
from protocol.messages.advert import Dtype
from protocol.messages.base import WireMessage

MAX_SIDE = 1 << 14
"""Largest m (output rows and columns of a product)."""
MAX_INNER = 4096
"""Largest k: beyond it bf16/fp16/tf32 partial sums are no longer exact in fp32."""
MAX_REPS = 4096
"""Most products one device computes."""
MAX_DEVICES = 16
"""Most devices (GPUs of one host) one challenge runs on at once."""
LEAF_ROWS = 64
"""Row digests per Merkle leaf (all m rows when m is smaller)."""
DIGEST_BYTES = 8
MAX_OPENED_ROWS = 16
MAX_ROWS = MAX_SIDE * MAX_REPS * MAX_DEVICES
"""Rows of all products together; a row on the wire is ``rep * m + row``."""
MAX_PROOF_DEPTH = 31
"""log2(MAX_ROWS) + 1: enough siblings for any tree over at most MAX_ROWS leaves."""

RowIndex = Annotated[StrictInt, Field(ge=0, lt=MAX_ROWS)]
"""A row of the challenge: ``rep * m + row``."""


class Challenge(WireMessage):
    """Compute ``reps`` seeded products (m x k times k x m) in ``dtype`` by ``deadline``,
    split evenly over ``devices`` devices computing at once (the GPUs the provider
    advertises free; 1 for a CPU provider)."""

    AUTHOR_FIELD: ClassVar[str | None] = "coordinator"

    type: Literal["challenge.request"] = "challenge.request"
    challenge_id: Bytes16
    coordinator: AddressField
    provider: AddressField
    seed: Bytes32
    dtype: Dtype
    m: Annotated[StrictInt, Field(ge=1, le=MAX_SIDE)]
    k: Annotated[StrictInt, Field(ge=1, le=MAX_INNER)]
    reps: Annotated[StrictInt, Field(ge=1, le=MAX_REPS * MAX_DEVICES)]
    devices: Annotated[StrictInt, Field(ge=1, le=MAX_DEVICES)] = 1
    deadline: Timestamp

    @model_validator(mode="after")
    def _whole_leaves(self) -> Challenge:
        if self.m > LEAF_ROWS and self.m % LEAF_ROWS:
            raise ValueError(f"m={self.m} must be a multiple of {LEAF_ROWS} (or at most it)")
        if self.reps % self.devices or self.reps > MAX_REPS * self.devices:
            raise ValueError(
                f"reps={self.reps} must be a multiple of devices={self.devices}, at most "
                f"{MAX_REPS} a device"
            )
        return self


class ChallengeResponse(WireMessage):
    """The provider's commitment to its row digests and how long the timed part took."""

    AUTHOR_FIELD: ClassVar[str | None] = "provider"

    type: Literal["challenge.response"] = "challenge.response"
    challenge_id: Bytes16
    provider: AddressField
    merkle_root: Bytes32
    elapsed_s: Annotated[NonNegFloat, Field(gt=0, le=86400)]


class ChallengeOpen(WireMessage):
    """Rows the coordinator wants opened, chosen after the root was committed."""

    AUTHOR_FIELD: ClassVar[str | None] = "coordinator"

    type: Literal["challenge.open"] = "challenge.open"
    challenge_id: Bytes16
    coordinator: AddressField
    rows: Annotated[tuple[RowIndex, ...], Field(min_length=1, max_length=MAX_OPENED_ROWS)]

    @model_validator(mode="after")
    def _rows_unique(self) -> ChallengeOpen:
        if len(set(self.rows)) != len(self.rows):
            raise ValueError("rows must be distinct")
        return self


class OpenedRow(BaseModel):
    """One output row (little-endian values of the output dtype), the row digests of its
    Merkle leaf, and that leaf's authentication path."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: RowIndex
    values: RowBytes
    digests: Annotated[
        RowBytes, Field(min_length=DIGEST_BYTES, max_length=DIGEST_BYTES * LEAF_ROWS)
    ]
    proof: Annotated[tuple[Bytes32, ...], Field(max_length=MAX_PROOF_DEPTH)]


class ChallengeRows(WireMessage):
    """The provider's answer to :class:`ChallengeOpen`."""

    AUTHOR_FIELD: ClassVar[str | None] = "provider"

    type: Literal["challenge.rows"] = "challenge.rows"
    challenge_id: Bytes16
    provider: AddressField
    rows: Annotated[tuple[OpenedRow, ...], Field(min_length=1, max_length=MAX_OPENED_ROWS)]
