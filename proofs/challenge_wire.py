"""How challenge messages on the wire describe :mod:`proofs.challenge` objects.

Both sides of ``CHALLENGE_PROTOCOL`` must agree on this mapping, so it lives here, pure:

* a wire :class:`~protocol.messages.Challenge` is an :class:`ExactChallenge` with the same
  seed, dtype, m, k, reps and devices;
* a row on the wire (:class:`~protocol.messages.ChallengeOpen` rows and
  :attr:`OpenedRow.index`) is ``rep * m + row``; its Merkle leaf is that index divided by
  the challenge's rows per leaf, which the receiver derives (never the sender's figure).
"""

from __future__ import annotations

from collections.abc import Iterable

from proofs.challenge import ExactChallenge, ExactOpening
from proofs.merkle import MerkleProof
from protocol.messages import Challenge, OpenedRow


def challenge_from_wire(msg: Challenge) -> ExactChallenge:
    """The :mod:`proofs` challenge that a wire challenge describes (raises
    ``ChallengeError`` when it is outside the proofs' limits)."""
    return ExactChallenge(
        seed=msg.seed, dtype=msg.dtype, m=msg.m, k=msg.k, reps=msg.reps, devices=msg.devices
    )


def row_index(ch: ExactChallenge, rep: int, row: int) -> int:
    """The wire index of ``row`` in product ``rep``."""
    return rep * ch.m + row


def rep_row(ch: ExactChallenge, index: int) -> tuple[int, int]:
    """The ``(rep, row)`` a wire row index names (inverse of :func:`row_index`)."""
    return index // ch.m, index % ch.m


def rows_to_open(ch: ExactChallenge, picks: Iterable[tuple[int, int]]) -> tuple[int, ...]:
    """``ChallengeOpen.rows`` for ``(rep, row)`` picks (from ``pick_exact_rows``)."""
    return tuple(row_index(ch, rep, row) for rep, row in picks)


def to_opened_row(ch: ExactChallenge, opening: ExactOpening) -> OpenedRow:
    """A provider's opening as sent in ``ChallengeRows``."""
    return OpenedRow(
        index=row_index(ch, opening.rep, opening.row),
        values=opening.encoded,
        digests=opening.group,
        proof=opening.proof.siblings,
    )


def from_opened_row(ch: ExactChallenge, row: OpenedRow) -> ExactOpening:
    """A received row as an opening to check (``ExactChecker.check`` / ``judge_exact``).

    The proof's leaf index and count are the challenge's, not anything the provider claims.
    """
    rep, r = rep_row(ch, row.index)
    proof = MerkleProof(
        index=row.index // ch.rows_per_leaf, leaf_count=ch.leaf_count, siblings=tuple(row.proof)
    )
    return ExactOpening(rep=rep, row=r, encoded=row.values, group=row.digests, proof=proof)
