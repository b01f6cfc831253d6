"""Commit-reveal over job results.

A provider commits to ``commitHash = keccak256(abi.encodePacked(result, salt))`` (the
on-chain format, computed by :func:`protocol.eip712.commit_hash`) and signs
``Commit(jobId, provider, commitHash)``; after every commitment is in it reveals
``(result, salt)``. The 32-byte random salt keeps a lazy provider from confirming a
guessed result against someone else's commitment, and the signed Commit ties the hash to
one job and one provider. :func:`binding_hash` is an off-chain helper for places that
want a single digest naming all four values.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from eth_utils import keccak

from proofs.errors import CommitmentMismatch
from protocol.eip712 import commit_hash
from protocol.errors import MessageError
from protocol.ids import Address, JobId, parse_address

SALT_BYTES = 32


def new_salt() -> bytes:
    """A fresh 32-byte salt from the OS's CSPRNG; persist it before committing."""
    return secrets.token_bytes(SALT_BYTES)


def _check32(value: bytes, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise CommitmentMismatch(f"{what} must be 32 bytes")
    return value


@dataclass(frozen=True)
class Commitment:
    """What a provider publishes before reveal: a hash bound to one job and one provider."""

    job_id: JobId
    provider: Address
    commit_hash: bytes


@dataclass(frozen=True)
class Reveal:
    """What a provider discloses after every commitment is in."""

    job_id: JobId
    provider: Address
    result: bytes
    salt: bytes


def commit(job_id: JobId, provider: Address, result: bytes, salt: bytes) -> Commitment:
    """The commitment for ``result`` under ``salt``; provider address normalized."""
    try:
        h = commit_hash(_check32(result, "result"), _check32(salt, "salt"))
    except MessageError as exc:
        raise CommitmentMismatch(str(exc)) from exc
    return Commitment(_check_job(job_id), parse_address(provider), h)


def _check_job(job_id: JobId) -> JobId:
    _check32(job_id, "job id")
    return job_id


def opens(commitment: Commitment, reveal: Reveal) -> bool:
    """True when ``reveal`` opens ``commitment``: same job, same provider, same hash."""
    if commitment.job_id != reveal.job_id:
        return False
    try:
        if parse_address(commitment.provider) != parse_address(reveal.provider):
            return False
        h = commit_hash(reveal.result, reveal.salt)
    except MessageError:
        return False
    return hmac.compare_digest(h, commitment.commit_hash)


def check_reveal(commitment: Commitment, reveal: Reveal) -> None:
    """Raise :class:`CommitmentMismatch` unless ``reveal`` opens ``commitment``."""
    if not opens(commitment, reveal):
        raise CommitmentMismatch(
            f"reveal by {reveal.provider} does not open its commitment for job "
            f"0x{reveal.job_id.hex()}"
        )


def binding_hash(job_id: JobId, provider: Address, result: bytes, salt: bytes) -> bytes:
    """``keccak256(jobId || provider || commitHash)``: one digest naming all four values.

    Off-chain only (the contract checks the EIP-712 Commit signature instead); useful as a
    key for persisting a commitment before it is sent.
    """
    c = commit(job_id, provider, result, salt)
    return keccak(c.job_id + bytes.fromhex(c.provider[2:]) + c.commit_hash)
