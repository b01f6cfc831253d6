"""A provider's commitment to a result and its later reveal.

Both carry the provider's EIP-712 signature (see :mod:`protocol.eip712`) so the
coordinator can hand them to the contract unchanged; the wire envelope around them is
signed separately. Checking the EIP-712 signature needs the chain's domain, which the
receiver knows: see :meth:`Commitment.verify` and :meth:`Reveal.verify`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import field_validator

from protocol import eip712
from protocol.errors import MessageError
from protocol.fields import AddressField, Bytes32, CidField, JobIdField, Signature65
from protocol.messages.base import WireMessage


class Commitment(WireMessage):
    """``commit_hash = keccak256(result || salt)`` and the provider's signed Commit."""

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
    """The result CID and salt behind a commitment, with the provider's signed Reveal."""

    AUTHOR_FIELD: ClassVar[str | None] = "provider"

    type: Literal["job.reveal"] = "job.reveal"
    job_id: JobIdField
    provider: AddressField
    result_cid: CidField
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
            and eip712.commit_hash(self.result, self.salt) == commitment.commit_hash
        )

    def verify(self, domain: eip712.Eip712Domain) -> None:
        """Raise ``SignatureError`` unless the provider signed this Reveal in ``domain``."""
        eip712.verify_reveal(
            domain, self.job_id, self.provider, self.result, self.salt, self.signature
        )
