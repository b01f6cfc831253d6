"""EIP-712 typed data the contracts check: provider Commit/Reveal and the token's permit.

The domain of Commit and Reveal is ``{name: "gpumarket", version: "1", chainId,
verifyingContract: JobMarket}``; the token's permit domain is the token's own
``{name: "Test USD", version: "1", ...}``. ``result`` is the 32-byte sha2-256 digest inside
the CIDv1 of a job's outputs directory, and ``commitHash = keccak256(result ‖ salt)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from protocol.errors import SignatureError
from protocol.ids import Address, JobId, parse_address

MARKET_DOMAIN_NAME = "gpumarket"
MARKET_DOMAIN_VERSION = "1"
TOKEN_DOMAIN_VERSION = "1"

COMMIT_TYPES: dict[str, list[dict[str, str]]] = {
    "Commit": [
        {"name": "jobId", "type": "bytes32"},
        {"name": "provider", "type": "address"},
        {"name": "commitHash", "type": "bytes32"},
    ]
}
REVEAL_TYPES: dict[str, list[dict[str, str]]] = {
    "Reveal": [
        {"name": "jobId", "type": "bytes32"},
        {"name": "provider", "type": "address"},
        {"name": "result", "type": "bytes32"},
        {"name": "salt", "type": "bytes32"},
    ]
}
PERMIT_TYPES: dict[str, list[dict[str, str]]] = {
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
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


def market_domain(chain_id: int, market: str) -> dict[str, Any]:
    return {
        "name": MARKET_DOMAIN_NAME,
        "version": MARKET_DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": parse_address(market),
    }


def commit_hash(result: bytes, salt: bytes) -> bytes:
    """keccak256(result ‖ salt), both 32 bytes (Solidity's abi.encodePacked)."""
    _check32("result", result)
    _check32("salt", salt)
    return keccak(result + salt)


def commit_message(job_id: JobId, provider: str, commit: bytes) -> dict[str, Any]:
    _check32("commitHash", commit)
    return {"jobId": bytes(job_id), "provider": parse_address(provider), "commitHash": commit}


def reveal_message(job_id: JobId, provider: str, result: bytes, salt: bytes) -> dict[str, Any]:
    _check32("result", result)
    _check32("salt", salt)
    return {
        "jobId": bytes(job_id),
        "provider": parse_address(provider),
        "result": result,
        "salt": salt,
    }


def sign_commit(
    account: LocalAccount, chain_id: int, market: str, job_id: JobId, commit: bytes
) -> Signature:
    """The provider's signature over ``Commit(jobId, provider, commitHash)``."""
    message = commit_message(job_id, account.address, commit)
    return _sign(account, market_domain(chain_id, market), COMMIT_TYPES, message)


def sign_reveal(
    account: LocalAccount, chain_id: int, market: str, job_id: JobId, result: bytes, salt: bytes
) -> Signature:
    """The provider's signature over ``Reveal(jobId, provider, result, salt)``."""
    message = reveal_message(job_id, account.address, result, salt)
    return _sign(account, market_domain(chain_id, market), REVEAL_TYPES, message)


def recover_commit(
    chain_id: int, market: str, job_id: JobId, provider: str, commit: bytes, sig: Signature
) -> Address:
    message = commit_message(job_id, provider, commit)
    return _recover(market_domain(chain_id, market), COMMIT_TYPES, message, sig)


def recover_reveal(
    chain_id: int,
    market: str,
    job_id: JobId,
    provider: str,
    result: bytes,
    salt: bytes,
    sig: Signature,
) -> Address:
    message = reveal_message(job_id, provider, result, salt)
    return _recover(market_domain(chain_id, market), REVEAL_TYPES, message, sig)


def sign_permit(
    account: LocalAccount,
    *,
    chain_id: int,
    token: str,
    token_name: str,
    spender: str,
    value: int,
    nonce: int,
    deadline: int,
) -> Signature:
    """An EIP-2612 permit letting ``spender`` take ``value`` of ``account``'s tokens."""
    domain = {
        "name": token_name,
        "version": TOKEN_DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": parse_address(token),
    }
    message = {
        "owner": account.address,
        "spender": parse_address(spender),
        "value": value,
        "nonce": nonce,
        "deadline": deadline,
    }
    return _sign(account, domain, PERMIT_TYPES, message)


def _sign(
    account: LocalAccount,
    domain: dict[str, Any],
    types: dict[str, list[dict[str, str]]],
    message: dict[str, Any],
) -> Signature:
    signable = encode_typed_data(domain_data=domain, message_types=types, message_data=message)
    signed = account.sign_message(signable)
    return Signature(v=signed.v, r=signed.r.to_bytes(32, "big"), s=signed.s.to_bytes(32, "big"))


def _recover(
    domain: dict[str, Any],
    types: dict[str, list[dict[str, str]]],
    message: dict[str, Any],
    sig: Signature,
) -> Address:
    signable = encode_typed_data(domain_data=domain, message_types=types, message_data=message)
    try:
        signer = Account.recover_message(signable, vrs=(sig.v, sig.r, sig.s))
    except Exception as exc:  # eth_keys raises several unrelated types for bad input
        raise SignatureError(f"cannot recover signer: {exc}") from exc
    return parse_address(signer)


def _check32(name: str, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise SignatureError(f"{name} must be 32 bytes")
