"""Benchmark challenges: a timed, seeded matmul whose product rows are opened afterwards.

Flow: the coordinator sends :class:`Challenge`; the provider computes, commits to the
Merkle root over its row digests and reports the elapsed time in
:class:`ChallengeResponse`; only then does the coordinator pick rows to open
(:class:`ChallengeOpen`) and the provider sends them with Merkle proofs
(:class:`ChallengeRows`). The tree and row digest are defined in ``proofs``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from protocol.fields import AddressField, Bytes16, Bytes32, NonNegFloat, RowBytes, Timestamp
from protocol.messages.advert import Dtype
from protocol.messages.base import WireMessage

MIN_N = 16
MAX_N = 16384
MAX_REPEATS = 1024
MAX_OPENED_ROWS = 16
MAX_LEAVES = MAX_N * MAX_REPEATS
"""Rows of all repeated products together: the Merkle tree commits to every one."""
MAX_PROOF_DEPTH = 25
"""log2(MAX_LEAVES) + 1: enough siblings for any tree over at most MAX_LEAVES rows."""

RowIndex = Annotated[StrictInt, Field(ge=0, lt=MAX_LEAVES)]
"""A leaf of the product tree: ``repeat * n + row``."""


class Challenge(WireMessage):
    """Multiply seeded random n x n matrices in ``dtype``, ``repeats`` times, by ``deadline``."""

    AUTHOR_FIELD: ClassVar[str | None] = "coordinator"

    type: Literal["challenge.request"] = "challenge.request"
    challenge_id: Bytes16
    coordinator: AddressField
    provider: AddressField
    seed: Annotated[StrictInt, Field(ge=0, lt=2**64)]
    n: Annotated[StrictInt, Field(ge=MIN_N, le=MAX_N)]
    dtype: Dtype
    repeats: Annotated[StrictInt, Field(ge=1, le=MAX_REPEATS)] = 1
    deadline: Timestamp


class ChallengeResponse(WireMessage):
    """The provider's commitment to its product and how long the timed part took."""

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
    """One product row, raw little-endian values, and its Merkle authentication path."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: RowIndex
    values: RowBytes
    proof: Annotated[tuple[Bytes32, ...], Field(max_length=MAX_PROOF_DEPTH)]


class ChallengeRows(WireMessage):
    """The provider's answer to :class:`ChallengeOpen`."""

    AUTHOR_FIELD: ClassVar[str | None] = "provider"

    type: Literal["challenge.rows"] = "challenge.rows"
    challenge_id: Bytes16
    provider: AddressField
    rows: Annotated[tuple[OpenedRow, ...], Field(min_length=1, max_length=MAX_OPENED_ROWS)]
