"""Binary Merkle trees over sha2-256 with inclusion proofs.

Leaves and inner nodes hash under different one-byte prefixes (0x00 and 0x01), so a node
can never be passed off as a leaf. A level with an odd count promotes its last node
unchanged instead of duplicating it, which keeps two different leaf lists from sharing a
root. Two uses: output files (``path`` + file digest leaves, so two results that differ can
be compared file by file) and challenge matrix rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from proofs.errors import MerkleProofError

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"\x02").digest()
"""Root of a tree with no leaves (prefix 0x02 keeps it apart from leaves and nodes)."""

MAX_PROOF_DEPTH = 64


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


@dataclass(frozen=True)
class MerkleProof:
    """Inclusion proof of leaf ``index`` in a tree of ``leaf_count`` leaves."""

    index: int
    leaf_count: int
    siblings: tuple[bytes, ...]


class MerkleTree:
    """A tree built from leaf *hashes*; keeps every level so proofs are O(log n)."""

    def __init__(self, leaf_hashes: Iterable[bytes]) -> None:
        level = list(leaf_hashes)
        for h in level:
            if len(h) != 32:
                raise MerkleProofError("leaf hashes must be 32 bytes")
        self.levels: list[list[bytes]] = [level]
        while len(level) > 1:
            nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self.levels.append(nxt)
            level = nxt

    @classmethod
    def from_data(cls, leaves: Iterable[bytes]) -> MerkleTree:
        return cls(leaf_hash(d) for d in leaves)

    @property
    def leaf_count(self) -> int:
        return len(self.levels[0])

    @property
    def root(self) -> bytes:
        return self.levels[-1][0] if self.leaf_count else EMPTY_ROOT

    def proof(self, index: int) -> MerkleProof:
        if not 0 <= index < self.leaf_count:
            raise MerkleProofError(f"leaf {index} out of range 0..{self.leaf_count - 1}")
        siblings: list[bytes] = []
        i = index
        for level in self.levels[:-1]:
            sib = i ^ 1
            if sib < len(level):
                siblings.append(level[sib])
            i //= 2
        return MerkleProof(index, self.leaf_count, tuple(siblings))


def root_from_proof(leaf: bytes, proof: MerkleProof) -> bytes:
    """Walk ``proof`` up from the leaf hash ``leaf``; raise if its shape is inconsistent."""
    if proof.leaf_count < 1 or not 0 <= proof.index < proof.leaf_count:
        raise MerkleProofError("proof index out of range")
    if len(proof.siblings) > MAX_PROOF_DEPTH:
        raise MerkleProofError("proof too long")
    h, i, width, used = leaf, proof.index, proof.leaf_count, 0
    while width > 1:
        if i ^ 1 < width:
            if used >= len(proof.siblings):
                raise MerkleProofError("proof too short")
            sib = proof.siblings[used]
            if len(sib) != 32:
                raise MerkleProofError("sibling hashes must be 32 bytes")
            used += 1
            h = node_hash(h, sib) if i % 2 == 0 else node_hash(sib, h)
        i //= 2
        width = (width + 1) // 2
    if used != len(proof.siblings):
        raise MerkleProofError("proof has extra siblings")
    return h


def verify_proof(root: bytes, leaf_data: bytes, proof: MerkleProof) -> bool:
    """True when ``leaf_data`` sits at ``proof.index`` under ``root``."""
    try:
        return root_from_proof(leaf_hash(leaf_data), proof) == root
    except MerkleProofError:
        return False


def file_leaf(path: str, digest: bytes) -> bytes:
    """Leaf data for one output file: the UTF-8 path, a NUL, then the file's digest."""
    if "\x00" in path:
        raise MerkleProofError("paths may not contain NUL")
    return path.encode() + b"\x00" + digest


def files_tree(digests: Mapping[str, bytes]) -> tuple[list[str], MerkleTree]:
    """Tree over ``path -> digest`` in sorted path order; returns the order and the tree."""
    paths = sorted(digests)
    return paths, MerkleTree.from_data(file_leaf(p, digests[p]) for p in paths)


def differing_leaves(a: MerkleTree, b: MerkleTree) -> list[int]:
    """Indices of leaves that differ between two trees of equal size.

    Descends only into subtrees whose hashes differ, so k differences among n leaves cost
    O(k log n) node comparisons: the way two parties find where their outputs part.
    """
    if a.leaf_count != b.leaf_count:
        raise MerkleProofError("trees differ in size; compare their leaf lists instead")
    if a.leaf_count == 0:
        return []
    frontier = [0]
    for depth in range(len(a.levels) - 1, 0, -1):
        la, lb = a.levels[depth - 1], b.levels[depth - 1]
        nxt: list[int] = []
        for i in frontier:
            for child in (2 * i, 2 * i + 1):
                if child < len(la) and la[child] != lb[child]:
                    nxt.append(child)
        frontier = nxt
    level0a, level0b = a.levels[0], b.levels[0]
    return [i for i in frontier if level0a[i] != level0b[i]]
