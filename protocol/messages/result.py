"""A provider's consent to a seat, its commitment to a result, its later reveal, and the
coordinator's receipt for the commitment.

Each carries an EIP-712 signature (see :mod:`protocol.eip712`) that the contract can check
unchanged; the wire envelope around them is signed separately. Checking the EIP-712
signature needs the chain's domain, which the receiver knows: see the ``verify`` methods.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictInt, field_validator

from protocol import eip712
from protocol.errors import MessageError
from protocol.fields import (
    AddressField,
    Bytes32,
    CidField,
    JobIdField,
    LongText,
    Signature65,
    Timestamp,
    WeiField,
)
from protocol.messages.base import WireMessage

RuntimeMs = Annotated[StrictInt, Field(ge=0, lt=2**64)]
SeatIndex = Annotated[StrictInt, Field(ge=0, lt=8)]


class Accept(WireMessage):
    """A provider's answer to a JobOffer: its signed EIP-712 ``Accept`` for exactly that seat,
    price, rate and the job's on-chain terms, valid until ``expiry``."""

    AUTHOR_FIELD: ClassVar[str | None] = "provider"

    type: Literal["job.accept"] = "job.accept"
    job_id: JobIdField
    provider: AddressField
    seat: SeatIndex
    price: WeiField
    rate_per_hour: WeiField
    expiry: Timestamp
    signature: Signature65

    def verify(self, domain: eip712.Eip712Domain, terms_hash: bytes) -> None:
        """Raise ``SignatureError`` unless the provider signed this consent for ``terms_hash``."""
        eip712.verify_accept(
            domain,
            self.job_id,
            self.provider,
            self.seat,
            self.price,
            self.rate_per_hour,
            terms_hash,
            self.expiry,
            self.signature,
        )


class Decline(WireMessage):
    """A provider's answer to a JobOffer it will not take, and why (its policy, or busy)."""

    AUTHOR_FIELD: ClassVar[str | None] = "provider"

    type: Literal["job.decline"] = "job.decline"
    job_id: JobIdField
    provider: AddressField
    reason: LongText
    busy: bool = False


class CommitReceipt(WireMessage):
    """The coordinator's answer to a Commitment: its EIP-712 ``CommitReceipt``, which lets
    the provider's reveal count as a vote on chain even if the coordinator goes silent."""

    AUTHOR_FIELD: ClassVar[str | None] = "coordinator"

    type: Literal["job.commit_receipt"] = "job.commit_receipt"
    job_id: JobIdField
    provider: AddressField
    coordinator: AddressField
    seat: SeatIndex
    commit_hash: Bytes32
    signature: Signature65

    def verify(self, domain: eip712.Eip712Domain) -> None:
        """Raise ``SignatureError`` unless the coordinator signed this receipt."""
        eip712.verify_receipt(
            domain,
            self.job_id,
            self.provider,
            self.seat,
            self.commit_hash,
            self.coordinator,
            self.signature,
        )


class Commitment(WireMessage):
    """``commit_hash = keccak256(abi.encode(jobId, provider, result, runtimeMs, salt))`` and
    the provider's signed Commit."""

    AUTHOR_FIELD: ClassVar[str | None] = "provider"

    type: Literal["job.commitment"] = "job.commitment"
    job_id: JobIdField
    provider: AddressField
    commit_hash: Bytes32
    signature: Signature65

    def verify(self, domain: eip712.Eip712Domain) -> None:
        """Raise ``SignatureError`` unless the provider signed this Commit in ``domain``."""
        eip712.verify_commit(domain, self.job_id, self.provider, self.commit_hash, self.signature)


class Reveal(WireMessage):
    """The result CID, runtime and salt behind a commitment, with the provider's signed
    Reveal."""

    AUTHOR_FIELD: ClassVar[str | None] = "provider"

    type: Literal["job.reveal"] = "job.reveal"
    job_id: JobIdField
    provider: AddressField
    result_cid: CidField
    runtime_ms: RuntimeMs
    salt: Bytes32
    signature: Signature65

    @field_validator("result_cid")
    @classmethod
    def _result_cid_is_a_directory_digest(cls, value: str) -> str:
        try:
            eip712.cid_to_result_digest(value)
        except MessageError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @property
    def result(self) -> bytes:
        """The on-chain result: the sha2-256 digest inside ``result_cid``."""
        return eip712.cid_to_result_digest(self.result_cid)

    def matches(self, commitment: Commitment) -> bool:
        """True when this reveal opens ``commitment`` (same job, provider and hash)."""
        return (
            commitment.job_id == self.job_id
            and commitment.provider == self.provider
            and self.commit_hash() == commitment.commit_hash
        )

    def commit_hash(self) -> bytes:
        """The commitment this reveal opens."""
        return eip712.commit_hash(
            self.job_id, self.provider, self.result, self.runtime_ms, self.salt
        )

    def verify(self, domain: eip712.Eip712Domain) -> None:
        """Raise ``SignatureError`` unless the provider signed this Reveal in ``domain``."""
        eip712.verify_reveal(
            domain,
            self.job_id,
            self.provider,
            self.result,
            self.runtime_ms,
            self.salt,
            self.signature,
        )
