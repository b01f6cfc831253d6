"""EIP-712 typed data for the signatures the JobMarket contract checks.

This module is the protocol's source of truth for the on-chain encodings::

    domain  {name: "gpumarket", version: "1", chainId, verifyingContract: JobMarket}
    Commit(bytes32 jobId,address provider,bytes32 commitHash)
        commitHash = keccak256(abi.encodePacked(result, salt))
    Reveal(bytes32 jobId,address provider,bytes32 result,bytes32 salt)

``result`` is the 32-byte sha2-256 digest inside the CIDv1 of a job's outputs directory.
Signatures are 65 bytes ``r || s || v`` with ``v`` in {27, 28} and low ``s``, the form
OpenZeppelin's ECDSA library accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import keccak
from multiformats import CID, multihash

from protocol.errors import MessageError, SignatureError
from protocol.ids import Address, Cid, JobId, parse_address

DOMAIN_NAME: Final = "gpumarket"
DOMAIN_VERSION: Final = "1"
SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
COMMIT_TYPE: Final = [
    {"name": "jobId", "type": "bytes32"},
    {"name": "provider", "type": "address"},
    {"name": "commitHash", "type": "bytes32"},
]
REVEAL_TYPE: Final = [
    {"name": "jobId", "type": "bytes32"},
    {"name": "provider", "type": "address"},
    {"name": "result", "type": "bytes32"},
    {"name": "salt", "type": "bytes32"},
]


@dataclass(frozen=True)
class Eip712Domain:
    """The signing domain: one chain, one JobMarket deployment."""

    chain_id: int
    verifying_contract: Address

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


def _bytes32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise MessageError(f"{what} must be 32 bytes")
    return value


def commit_hash(result: bytes, salt: bytes) -> bytes:
    """``keccak256(abi.encodePacked(result, salt))``: what a provider commits to."""
    return keccak(_bytes32(result, "result") + _bytes32(salt, "salt"))


def commit_typed_data(
    domain: Eip712Domain, job_id: JobId, provider: Address, commit_hash_: bytes
) -> dict[str, Any]:
    """The full EIP-712 structure of a Commit, as ``eth_signTypedData_v4`` takes it."""
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, "Commit": COMMIT_TYPE},
        "primaryType": "Commit",
        "domain": domain.as_dict(),
        "message": {
            "jobId": _bytes32(job_id, "job id"),
            "provider": parse_address(provider),
            "commitHash": _bytes32(commit_hash_, "commit hash"),
        },
    }


def reveal_typed_data(
    domain: Eip712Domain, job_id: JobId, provider: Address, result: bytes, salt: bytes
) -> dict[str, Any]:
    """The full EIP-712 structure of a Reveal."""
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, "Reveal": REVEAL_TYPE},
        "primaryType": "Reveal",
        "domain": domain.as_dict(),
        "message": {
            "jobId": _bytes32(job_id, "job id"),
            "provider": parse_address(provider),
            "result": _bytes32(result, "result"),
            "salt": _bytes32(salt, "salt"),
        },
    }


def _signable(typed: dict[str, Any]) -> SignableMessage:
    return encode_typed_data(full_message=typed)


def typed_data_digest(typed: dict[str, Any]) -> bytes:
    """``keccak256("\\x19\\x01" || domainSeparator || structHash)``, what ecrecover sees."""
    msg = _signable(typed)
    return keccak(b"\x19" + msg.version + msg.header + msg.body)


def sign_typed(private_key: bytes, typed: dict[str, Any]) -> bytes:
    """Sign EIP-712 data; returns 65 bytes ``r || s || v`` (v = 27 or 28)."""
    signed = Account.sign_message(_signable(typed), private_key)
    return bytes(signed.signature)


def recover_typed(typed: dict[str, Any], signature: bytes) -> Address:
    """Recover the signer of EIP-712 data, refusing malleable or malformed signatures."""
    check_signature_form(signature)
    try:
        signer = Account.recover_message(_signable(typed), signature=signature)
    except Exception as exc:  # eth_keys raises BadSignature and ValueError variants
        raise SignatureError(f"signature does not recover: {exc}") from exc
    return parse_address(signer)


def check_signature_form(signature: bytes) -> None:
    """Refuse signatures a Solidity ECDSA verifier would refuse (length, v, high s)."""
    if not isinstance(signature, bytes) or len(signature) != 65:
        raise SignatureError("signature must be 65 bytes")
    s = int.from_bytes(signature[32:64], "big")
    if signature[64] not in (27, 28):
        raise SignatureError("signature v must be 27 or 28")
    if not 0 < s <= SECP256K1_N // 2:
        raise SignatureError("signature s is out of the lower half order (malleable)")


def sign_commit(
    private_key: bytes, domain: Eip712Domain, job_id: JobId, provider: Address, commit: bytes
) -> bytes:
    return sign_typed(private_key, commit_typed_data(domain, job_id, provider, commit))


def sign_reveal(
    private_key: bytes,
    domain: Eip712Domain,
    job_id: JobId,
    provider: Address,
    result: bytes,
    salt: bytes,
) -> bytes:
    return sign_typed(private_key, reveal_typed_data(domain, job_id, provider, result, salt))


def verify_commit(
    domain: Eip712Domain, job_id: JobId, provider: Address, commit: bytes, signature: bytes
) -> None:
    """Raise ``SignatureError`` unless ``provider`` signed this Commit."""
    signer = recover_typed(commit_typed_data(domain, job_id, provider, commit), signature)
    if signer != parse_address(provider):
        raise SignatureError(f"commit signed by {signer}, not by provider {provider}")


def verify_reveal(
    domain: Eip712Domain,
    job_id: JobId,
    provider: Address,
    result: bytes,
    salt: bytes,
    signature: bytes,
) -> None:
    """Raise ``SignatureError`` unless ``provider`` signed this Reveal."""
    typed = reveal_typed_data(domain, job_id, provider, result, salt)
    signer = recover_typed(typed, signature)
    if signer != parse_address(provider):
        raise SignatureError(f"reveal signed by {signer}, not by provider {provider}")


def cid_to_result_digest(cid: str) -> bytes:
    """The 32-byte sha2-256 digest inside a CIDv1 dag-pb outputs-directory CID."""
    try:
        parsed = CID.decode(cid)
    except Exception as exc:  # multiformats raises several unrelated types
        raise MessageError(f"not a CID: {cid!r}") from exc
    if parsed.version != 1:
        raise MessageError(f"result CID must be CIDv1: {cid}")
    if parsed.codec.name != "dag-pb":
        raise MessageError(f"result CID must be dag-pb (a directory), got {parsed.codec.name}")
    if parsed.hashfun.name != "sha2-256" or len(parsed.raw_digest) != 32:
        raise MessageError(f"result CID must use a 32-byte sha2-256 digest: {cid}")
    return bytes(parsed.raw_digest)


def digest_to_cid(digest: bytes) -> Cid:
    """The CIDv1 (dag-pb, sha2-256, base32) text of an on-chain result digest."""
    mh = multihash.wrap(_bytes32(digest, "result digest"), "sha2-256")
    return Cid(CID("base32", 1, "dag-pb", mh).encode("base32"))
