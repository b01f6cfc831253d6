"""How challenge messages on the wire describe :mod:`proofs.challenge` objects.

Both sides of ``CHALLENGE_PROTOCOL`` must agree on this mapping, so it lives here, pure:

* a wire :class:`~protocol.messages.Challenge` is a square challenge: ``m = k = n``,
  ``reps = repeats``, the 64-bit seed widened to 32 big-endian bytes, and the advertised
  dtype name (``fp32``, ``tf32``, ``fp16``, ``bf16``) turned into the torch dtype to run;
* a row on the wire (:class:`~protocol.messages.ChallengeOpen` rows and
  :attr:`OpenedRow.index`) is the Merkle leaf index ``rep * n + row``.
"""

from __future__ import annotations

from collections.abc import Iterable

from proofs.challenge import MatmulChallenge, RowOpening
from proofs.merkle import MerkleProof
from protocol.messages import Challenge, OpenedRow

RUN_DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}
"""Advertised dtype -> the torch dtype its challenge is computed in."""


def challenge_from_wire(msg: Challenge) -> MatmulChallenge:
    """The :mod:`proofs` challenge that a wire challenge describes."""
    return MatmulChallenge(
        seed=msg.seed.to_bytes(32, "big"),
        m=msg.n,
        k=msg.n,
        reps=msg.repeats,
        dtype=RUN_DTYPES[msg.dtype],
    )


def leaf_index(ch: MatmulChallenge, rep: int, row: int) -> int:
    """The wire row index (Merkle leaf) of ``row`` in product ``rep``."""
    return rep * ch.m + row


def rep_row(ch: MatmulChallenge, index: int) -> tuple[int, int]:
    """The ``(rep, row)`` a wire row index names (inverse of :func:`leaf_index`)."""
    return index // ch.m, index % ch.m


def rows_to_open(ch: MatmulChallenge, picks: Iterable[tuple[int, int]]) -> tuple[int, ...]:
    """``ChallengeOpen.rows`` for ``(rep, row)`` picks (e.g. from ``pick_rows``)."""
    return tuple(leaf_index(ch, rep, row) for rep, row in picks)


def to_opened_row(ch: MatmulChallenge, opening: RowOpening) -> OpenedRow:
    """A provider's opening as sent in ``ChallengeRows``."""
    return OpenedRow(
        index=leaf_index(ch, opening.rep, opening.row),
        values=opening.encoded,
        proof=opening.proof.siblings,
    )


def from_opened_row(ch: MatmulChallenge, row: OpenedRow) -> RowOpening:
    """A received row as an opening to check (``RowChecker.check`` / ``judge``).

    The proof's leaf count is the challenge's, not anything the provider claims.
    """
    rep, r = rep_row(ch, row.index)
    proof = MerkleProof(index=row.index, leaf_count=ch.leaf_count, siblings=tuple(row.proof))
    return RowOpening(rep=rep, row=r, encoded=row.values, proof=proof)
