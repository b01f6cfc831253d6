"""Commit-reveal over job results.

A provider commits to ``commitHash = keccak256(abi.encode(jobId, provider, result,
runtimeMs, salt))`` (computed by :func:`protocol.eip712.commit_hash`, the one definition of
the on-chain encoding) and signs ``Commit(jobId, provider, commitHash)``; after every
commitment is in it reveals ``(result, runtimeMs, salt)``. The hash names the job and the
provider, so a copier cannot reuse it; the 32-byte random salt keeps a lazy provider from
confirming a guessed result against someone else's commitment.
"""

from __future__ import annotations

import secrets

SALT_BYTES = 32


def new_salt() -> bytes:
    """A fresh 32-byte salt from the OS's CSPRNG; persist it before committing."""
    return secrets.token_bytes(SALT_BYTES)
