"""EIP-712 typed data: every signature the contracts check, in one module.

This module is the protocol's source of truth for the on-chain encodings
(``contracts/README.md`` states the rules they serve)::

    domain  {name: "gpumarket", version: "2", chainId, verifyingContract: JobMarket}
    Accept(bytes32 jobId,address provider,uint8 seat,uint64 price,uint64 ratePerHour,
           bytes32 termsHash,uint32 expiry)                         provider's consent
    Commit(bytes32 jobId,address provider,bytes32 commitHash)       provider
    CommitReceipt(bytes32 jobId,address provider,uint8 seat,bytes32 commitHash)
                                                                    coordinator
    Reveal(bytes32 jobId,address provider,bytes32 result,uint64 runtimeMs,bytes32 salt)
                                                                    provider
        commitHash = keccak256(abi.encode(jobId, provider, result, runtimeMs, salt))
    Permit(owner,spender,value,nonce,deadline)   EIP-2612, in the token's own domain

``result`` is the 32-byte sha2-256 digest inside the CIDv1 of a job's outputs directory.
Signatures are 65 bytes ``r || s || v`` with ``v`` in {27, 28} and low ``s``, the form the
contract's ecrecover check accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eth_abi import encode
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from multiformats import CID, multihash

from protocol.errors import MessageError, SignatureError
from protocol.ids import Address, Cid, JobId, parse_address

DOMAIN_NAME: Final = "gpumarket"
DOMAIN_VERSION: Final = "2"
TOKEN_DOMAIN_VERSION: Final = "1"
SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
UINT64_MAX: Final = 2**64 - 1
UINT32_MAX: Final = 2**32 - 1

_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
ACCEPT_TYPE: Final = [
    {"name": "jobId", "type": "bytes32"},
    {"name": "provider", "type": "address"},
    {"name": "seat", "type": "uint8"},
    {"name": "price", "type": "uint64"},
    {"name": "ratePerHour", "type": "uint64"},
    {"name": "termsHash", "type": "bytes32"},
    {"name": "expiry", "type": "uint32"},
]
COMMIT_TYPE: Final = [
    {"name": "jobId", "type": "bytes32"},
    {"name": "provider", "type": "address"},
    {"name": "commitHash", "type": "bytes32"},
]
RECEIPT_TYPE: Final = [
    {"name": "jobId", "type": "bytes32"},
    {"name": "provider", "type": "address"},
    {"name": "seat", "type": "uint8"},
    {"name": "commitHash", "type": "bytes32"},
]
REVEAL_TYPE: Final = [
    {"name": "jobId", "type": "bytes32"},
    {"name": "provider", "type": "address"},
    {"name": "result", "type": "bytes32"},
    {"name": "runtimeMs", "type": "uint64"},
    {"name": "salt", "type": "bytes32"},
]
PERMIT_TYPE: Final = [
    {"name": "owner", "type": "address"},
    {"name": "spender", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]

Signer = bytes | LocalAccount
"""A private key (32 bytes) or an eth-account ``LocalAccount``."""


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


@dataclass(frozen=True)
class Signature:
    """A secp256k1 signature split the way the contracts take it."""

    v: int
    r: bytes
    s: bytes

    def to_bytes(self) -> bytes:
        return self.r + self.s + bytes([self.v])

    @classmethod
    def from_bytes(cls, raw: bytes) -> Signature:
        if len(raw) != 65:
            raise SignatureError(f"signature must be 65 bytes, got {len(raw)}")
        v = raw[64]
        return cls(v=v + 27 if v < 27 else v, r=raw[:32], s=raw[32:64])


def _bytes32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise MessageError(f"{what} must be 32 bytes")
    return bytes(value)


def _uint(value: int, bits: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**bits:
        raise MessageError(f"{what} must be an integer in [0, 2^{bits})")
    return value


# ---------------------------------------------------------------------- hashes
def commit_hash(job_id: JobId, provider: str, result: bytes, runtime_ms: int, salt: bytes) -> bytes:
    """``keccak256(abi.encode(jobId, provider, result, runtimeMs, salt))``: what a provider
    commits to. It names the job and the provider, so nobody can reuse another's hash."""
    return keccak(
        encode(
            ["bytes32", "address", "bytes32", "uint64", "bytes32"],
            [
                _bytes32(job_id, "job id"),
                parse_address(provider),
                _bytes32(result, "result"),
                _uint(runtime_ms, 64, "runtime_ms"),
                _bytes32(salt, "salt"),
            ],
        )
    )


# ------------------------------------------------------------------ typed data
def _typed(
    domain: Eip712Domain, name: str, fields: list[dict[str, str]], message: dict[str, Any]
) -> dict[str, Any]:
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, name: fields},
        "primaryType": name,
        "domain": domain.as_dict(),
        "message": message,
    }


def accept_typed_data(
    domain: Eip712Domain,
    job_id: JobId,
    provider: str,
    seat: int,
    price: int,
    rate_per_hour: int,
    terms_hash: bytes,
    expiry: int,
) -> dict[str, Any]:
    """A provider's consent to take ``seat`` of a job with these terms, until ``expiry``."""
    return _typed(
        domain,
        "Accept",
        ACCEPT_TYPE,
        {
            "jobId": _bytes32(job_id, "job id"),
            "provider": parse_address(provider),
            "seat": _uint(seat, 8, "seat"),
            "price": _uint(price, 64, "price"),
            "ratePerHour": _uint(rate_per_hour, 64, "rate_per_hour"),
            "termsHash": _bytes32(terms_hash, "terms hash"),
            "expiry": _uint(expiry, 32, "expiry"),
        },
    )


def commit_typed_data(
    domain: Eip712Domain, job_id: JobId, provider: str, commit_hash_: bytes
) -> dict[str, Any]:
    """The full EIP-712 structure of a Commit, as ``eth_signTypedData_v4`` takes it."""
    return _typed(
        domain,
        "Commit",
        COMMIT_TYPE,
        {
            "jobId": _bytes32(job_id, "job id"),
            "provider": parse_address(provider),
            "commitHash": _bytes32(commit_hash_, "commit hash"),
        },
    )


def receipt_typed_data(
    domain: Eip712Domain, job_id: JobId, provider: str, seat: int, commit_hash_: bytes
) -> dict[str, Any]:
    """The coordinator's receipt for a provider's off-chain commitment."""
    return _typed(
        domain,
        "CommitReceipt",
        RECEIPT_TYPE,
        {
            "jobId": _bytes32(job_id, "job id"),
            "provider": parse_address(provider),
            "seat": _uint(seat, 8, "seat"),
            "commitHash": _bytes32(commit_hash_, "commit hash"),
        },
    )


def reveal_typed_data(
    domain: Eip712Domain,
    job_id: JobId,
    provider: str,
    result: bytes,
    runtime_ms: int,
    salt: bytes,
) -> dict[str, Any]:
    """The full EIP-712 structure of a Reveal."""
    return _typed(
        domain,
        "Reveal",
        REVEAL_TYPE,
        {
            "jobId": _bytes32(job_id, "job id"),
            "provider": parse_address(provider),
            "result": _bytes32(result, "result"),
            "runtimeMs": _uint(runtime_ms, 64, "runtime_ms"),
            "salt": _bytes32(salt, "salt"),
        },
    )


def permit_typed_data(
    *,
    chain_id: int,
    token: str,
    token_name: str,
    owner: str,
    spender: str,
    value: int,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    """An EIP-2612 permit in the token's own domain."""
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, "Permit": PERMIT_TYPE},
        "primaryType": "Permit",
        "domain": {
            "name": token_name,
            "version": TOKEN_DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": parse_address(token),
        },
        "message": {
            "owner": parse_address(owner),
            "spender": parse_address(spender),
            "value": value,
            "nonce": nonce,
            "deadline": deadline,
        },
    }


# -------------------------------------------------------------- sign / recover
def _signable(typed: dict[str, Any]) -> SignableMessage:
    return encode_typed_data(full_message=typed)


def typed_data_digest(typed: dict[str, Any]) -> bytes:
    """``keccak256("\\x19\\x01" || domainSeparator || structHash)``, what ecrecover sees."""
    msg = _signable(typed)
    return keccak(b"\x19" + msg.version + msg.header + msg.body)


def sign_typed(signer: Signer, typed: dict[str, Any]) -> bytes:
    """Sign EIP-712 data; returns 65 bytes ``r || s || v`` (v = 27 or 28)."""
    if isinstance(signer, LocalAccount):
        signed = signer.sign_message(_signable(typed))
    else:
        signed = Account.sign_message(_signable(typed), signer)
    return bytes(signed.signature)


def recover_typed(typed: dict[str, Any], signature: bytes) -> Address:
    """Recover the signer of EIP-712 data, refusing malleable or malformed signatures."""
    check_signature_form(signature)
    try:
        signer = Account.recover_message(_signable(typed), signature=signature)
    except Exception as exc:  # eth_keys raises BadSignature and ValueError variants
        raise SignatureError(f"signature does not recover: {exc}") from exc
    return parse_address(signer)


def expect_signer(typed: dict[str, Any], signature: bytes, expected: str, what: str) -> None:
    """Raise ``SignatureError`` unless ``expected`` signed ``typed``."""
    signer = recover_typed(typed, signature)
    if signer != parse_address(expected):
        raise SignatureError(f"{what} signed by {signer}, not by {parse_address(expected)}")


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
    signer: Signer, domain: Eip712Domain, job_id: JobId, provider: str, commit: bytes
) -> bytes:
    return sign_typed(signer, commit_typed_data(domain, job_id, provider, commit))


def sign_reveal(
    signer: Signer,
    domain: Eip712Domain,
    job_id: JobId,
    provider: str,
    result: bytes,
    runtime_ms: int,
    salt: bytes,
) -> bytes:
    return sign_typed(signer, reveal_typed_data(domain, job_id, provider, result, runtime_ms, salt))


def sign_accept(
    signer: Signer,
    domain: Eip712Domain,
    job_id: JobId,
    provider: str,
    seat: int,
    price: int,
    rate_per_hour: int,
    terms_hash: bytes,
    expiry: int,
) -> bytes:
    typed = accept_typed_data(
        domain, job_id, provider, seat, price, rate_per_hour, terms_hash, expiry
    )
    return sign_typed(signer, typed)


def sign_receipt(
    signer: Signer, domain: Eip712Domain, job_id: JobId, provider: str, seat: int, commit: bytes
) -> bytes:
    return sign_typed(signer, receipt_typed_data(domain, job_id, provider, seat, commit))


def sign_permit(
    signer: Signer,
    *,
    chain_id: int,
    token: str,
    token_name: str,
    owner: str,
    spender: str,
    value: int,
    nonce: int,
    deadline: int,
) -> Signature:
    """An EIP-2612 permit letting ``spender`` take ``value`` of ``owner``'s tokens."""
    typed = permit_typed_data(
        chain_id=chain_id,
        token=token,
        token_name=token_name,
        owner=owner,
        spender=spender,
        value=value,
        nonce=nonce,
        deadline=deadline,
    )
    return Signature.from_bytes(sign_typed(signer, typed))


def verify_commit(
    domain: Eip712Domain, job_id: JobId, provider: str, commit: bytes, signature: bytes
) -> None:
    """Raise ``SignatureError`` unless ``provider`` signed this Commit."""
    typed = commit_typed_data(domain, job_id, provider, commit)
    expect_signer(typed, signature, provider, "commit")


def verify_reveal(
    domain: Eip712Domain,
    job_id: JobId,
    provider: str,
    result: bytes,
    runtime_ms: int,
    salt: bytes,
    signature: bytes,
) -> None:
    """Raise ``SignatureError`` unless ``provider`` signed this Reveal."""
    typed = reveal_typed_data(domain, job_id, provider, result, runtime_ms, salt)
    expect_signer(typed, signature, provider, "reveal")


def verify_accept(
    domain: Eip712Domain,
    job_id: JobId,
    provider: str,
    seat: int,
    price: int,
    rate_per_hour: int,
    terms_hash: bytes,
    expiry: int,
    signature: bytes,
) -> None:
    """Raise ``SignatureError`` unless ``provider`` signed this Accept."""
    typed = accept_typed_data(
        domain, job_id, provider, seat, price, rate_per_hour, terms_hash, expiry
    )
    expect_signer(typed, signature, provider, "accept")


def verify_receipt(
    domain: Eip712Domain,
    job_id: JobId,
    provider: str,
    seat: int,
    commit: bytes,
    coordinator: str,
    signature: bytes,
) -> None:
    """Raise ``SignatureError`` unless ``coordinator`` signed this CommitReceipt."""
    typed = receipt_typed_data(domain, job_id, provider, seat, commit)
    expect_signer(typed, signature, coordinator, "commit receipt")


# ------------------------------------------------------------------------ CIDs
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
