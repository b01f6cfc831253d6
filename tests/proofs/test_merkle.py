from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proofs.errors import MerkleProofError
from proofs.merkle import (
    EMPTY_ROOT,
    MerkleProof,
    MerkleTree,
    differing_leaves,
    file_leaf,
    files_tree,
    leaf_hash,
    node_hash,
    root_from_proof,
    verify_proof,
)

leaves = st.lists(st.binary(max_size=40), min_size=1, max_size=70)


@given(leaves)
def test_every_leaf_proves_against_the_root(data: list[bytes]) -> None:
    tree = MerkleTree.from_data(data)
    for i, d in enumerate(data):
        assert verify_proof(tree.root, d, tree.proof(i))


@given(leaves, st.data())
def test_wrong_leaf_or_index_fails(data: list[bytes], draw: st.DataObject) -> None:
    tree = MerkleTree.from_data(data)
    i = draw.draw(st.integers(0, len(data) - 1))
    other = draw.draw(st.binary(max_size=40))
    proof = tree.proof(i)
    if other != data[i]:
        assert not verify_proof(tree.root, other, proof)
    j = draw.draw(st.integers(0, len(data) - 1))
    if data[j] != data[i]:
        moved = MerkleProof(j, proof.leaf_count, proof.siblings)
        assert not verify_proof(tree.root, data[i], moved)


@given(leaves, st.data())
def test_tampered_sibling_fails(data: list[bytes], draw: st.DataObject) -> None:
    tree = MerkleTree.from_data(data)
    i = draw.draw(st.integers(0, len(data) - 1))
    proof = tree.proof(i)
    if proof.siblings:
        k = draw.draw(st.integers(0, len(proof.siblings) - 1))
        sibs = list(proof.siblings)
        sibs[k] = bytes(32) if sibs[k] != bytes(32) else b"\x01" * 32
        assert not verify_proof(tree.root, data[i], MerkleProof(i, proof.leaf_count, tuple(sibs)))
        assert not verify_proof(
            tree.root, data[i], MerkleProof(i, proof.leaf_count, proof.siblings[:-1])
        )
        assert not verify_proof(
            tree.root, data[i], MerkleProof(i, proof.leaf_count, (*proof.siblings, bytes(32)))
        )


def test_leaves_and_nodes_are_domain_separated() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    # A node's preimage presented as leaf data must not reproduce the node hash.
    assert leaf_hash(a + b) != node_hash(a, b)
    two = MerkleTree.from_data([b"a", b"b"])
    assert MerkleTree.from_data([a + b]).root != two.root


def test_odd_levels_promote_instead_of_duplicating() -> None:
    three = MerkleTree.from_data([b"x", b"y", b"z"])
    four = MerkleTree.from_data([b"x", b"y", b"z", b"z"])
    assert three.root != four.root
    assert MerkleTree([]).root == EMPTY_ROOT


def test_proof_shape_errors() -> None:
    with pytest.raises(MerkleProofError):
        MerkleTree.from_data([b"a"]).proof(1)
    with pytest.raises(MerkleProofError):
        root_from_proof(bytes(32), MerkleProof(0, 0, ()))
    with pytest.raises(MerkleProofError):
        MerkleTree([b"short"])


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s),
        st.binary(min_size=32, max_size=32),
        min_size=1,
        max_size=40,
    ),
    st.data(),
)
def test_differing_leaves_finds_exactly_the_changed_files(
    files: dict[str, bytes], draw: st.DataObject
) -> None:
    paths, tree_a = files_tree(files)
    changed = draw.draw(st.sets(st.sampled_from(paths)))
    other = {
        p: (bytes(32) if d != bytes(32) else b"\x01" * 32) if p in changed else d
        for p, d in files.items()
    }
    _, tree_b = files_tree(other)
    found = {paths[i] for i in differing_leaves(tree_a, tree_b)}
    assert found == changed


def test_file_leaf_rejects_nul_paths() -> None:
    with pytest.raises(MerkleProofError):
        file_leaf("a\x00b", bytes(32))
