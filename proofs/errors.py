"""Finer proof errors, all under :class:`protocol.errors.ProofError`::

ProofError
├── CommitmentMismatch   a reveal does not open its commitment
├── MerkleProofError     a Merkle proof is malformed or does not reach the root
├── ArtifactFormatError  an output file claims a numeric format but cannot be parsed
└── ChallengeError       a benchmark challenge or its openings are malformed
"""

from __future__ import annotations

from protocol.errors import ProofError


class CommitmentMismatch(ProofError):
    """A revealed (result, salt) does not hash to the commitment it claims to open."""


class MerkleProofError(ProofError):
    """A Merkle proof is malformed or does not lead to the expected root."""


class ArtifactFormatError(ProofError):
    """An output file named ``.npy`` or ``.safetensors`` cannot be parsed as one."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ChallengeError(ProofError):
    """A benchmark challenge, commitment or opening is malformed."""
