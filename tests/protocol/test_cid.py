"""Pure-Python CIDs against the shared vectors (made by js-ipfs, cross-checked with Kubo)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID, multihash

from protocol.ipfs.cid import (
    DAG_PB,
    RAW,
    cid_binary,
    normalize_cid,
    parse_cid,
    parse_cid_binary,
    result_digest,
)
from protocol.ipfs.dagpb import PBLink, PBNode, decode_node, decode_varint, encode_varint
from protocol.ipfs.errors import InvalidCid, LayoutError, MalformedBlock
from protocol.ipfs.local import MAX_DIRECTORY_ENTRIES, file_ref, list_directory, path_ref
from protocol.ipfs.unixfs import (
    KUBO_DEFAULTS,
    TYPE_DIRECTORY,
    TYPE_FILE,
    FileDagBuilder,
    Layout,
    UnixFsData,
    decode_unixfs,
    hash_bytes,
)


def _vectors_path() -> Path:
    """CIDs made by js-ipfs (and agreeing with Kubo 0.22) in this project's layout."""
    return Path(__file__).resolve().parent / "data" / "ipfs_cids.json"


VECTORS: dict[str, Any] = json.loads(_vectors_path().read_text())
CHUNK = 262_144


def pattern(n: int) -> bytes:
    """The vectors' content rule: byte i = (i*31+7) % 256."""
    period = bytes((i * 31 + 7) % 256 for i in range(256))
    return (period * (n // 256 + 1))[:n]


def build_tree(root: Path, layout: dict[str, Any]) -> None:
    for name, spec in layout.items():
        if name.endswith("/"):
            (root / name[:-1]).mkdir()
            build_tree(root / name[:-1], spec)
        elif ".." in name:  # "f0000.txt..f0999.txt": 1000 files of 64 pattern bytes
            for i in range(1000):
                (root / f"f{i:04d}.txt").write_bytes(pattern(64))
        else:
            (root / name).write_bytes(pattern(spec))


def test_profile_matches_vectors() -> None:
    profile = VECTORS["profile"]
    layout = Layout()
    assert profile["chunker"] == f"size-{layout.chunk_size}"
    assert profile["max_links_per_node"] == layout.max_links
    assert profile["raw_leaves"] is layout.raw_leaves
    assert profile["cid_version"] == layout.cid_version


@pytest.mark.parametrize("vector", VECTORS["files"], ids=lambda v: f"n={v['n']}")
def test_file_vectors(vector: dict[str, Any]) -> None:
    data = pattern(vector["n"])
    assert hash_bytes(data).text == vector["cid"]
    assert hash_bytes(data, KUBO_DEFAULTS).text == vector["cidv0_crosscheck"]["kubo"]
    ref = hash_bytes(data)
    assert ref.size == vector["n"]


@pytest.mark.parametrize("vector", VECTORS["directories"], ids=lambda v: v["name"])
def test_directory_vectors(vector: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    build_tree(root, vector["layout"])
    assert path_ref(root).text == vector["cid"]
    assert path_ref(root, KUBO_DEFAULTS).text == vector["cidv0_crosscheck"]["kubo"]


def test_file_on_disk_equals_bytes(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK + 17)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_ref(path) == hash_bytes(data)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=3 * CHUNK + 5),
    cuts=st.lists(st.integers(min_value=0, max_value=3 * CHUNK + 5), max_size=8),
)
def test_streaming_splits_do_not_change_the_cid(size: int, cuts: list[int]) -> None:
    data = hashlib.shake_256(size.to_bytes(4, "big")).digest(size)
    builder = FileDagBuilder()
    start = 0
    for cut in [*sorted(c for c in cuts if c <= size), size]:
        builder.update(data[start:cut])
        start = cut
    assert builder.finish() == hash_bytes(data)
    # keeping every block for a sink takes another code path to the same root
    blocks: dict[bytes, bytes] = {}
    assert hash_bytes(data, sink=blocks.__setitem__) == hash_bytes(data)


def test_chunk_order_matters_with_distinct_chunks() -> None:
    # The vectors' content repeats every chunk; distinct chunks catch leaf-order bugs.
    a, b = b"\x01" * CHUNK, b"\x02" * CHUNK
    assert hash_bytes(a + b) != hash_bytes(b + a)


def test_tree_shape_of_175_chunks() -> None:
    """175 chunks: root -> [node of 174 leaves, node of 1 leaf] (balanced layout)."""
    layout = Layout(chunk_size=4)
    blocks: dict[bytes, bytes] = {}
    data = b"".join(i.to_bytes(4, "big") for i in range(175))
    ref = hash_bytes(data, layout, sink=blocks.__setitem__)
    root = decode_node(blocks[ref.cid])
    assert [len(decode_node(blocks[link.cid]).links) for link in root.links] == [174, 1]
    root_data = decode_unixfs(root.data or b"")
    assert root_data.type == TYPE_FILE
    assert root_data.filesize == 700
    assert root_data.blocksizes == (696, 4)
    assert ref.tsize == len(blocks[ref.cid]) + sum(link.tsize for link in root.links)
    # every block the sink received is addressed by its own hash
    for cid, block in blocks.items():
        parsed = parse_cid_binary(cid)
        assert parsed.digest == hashlib.sha256(block).digest()


def test_exactly_max_links_chunks_has_one_level() -> None:
    layout = Layout(chunk_size=4)
    blocks: dict[bytes, bytes] = {}
    data = b"".join(i.to_bytes(4, "big") for i in range(174))
    ref = hash_bytes(data, layout, sink=blocks.__setitem__)
    root = decode_node(blocks[ref.cid])
    assert len(root.links) == 174
    assert all(parse_cid_binary(link.cid).codec == RAW for link in root.links)


def test_single_chunk_and_empty_file_are_raw_blocks() -> None:
    for data in (b"", b"x", os.urandom(CHUNK)):
        ref = hash_bytes(data)
        assert ref.cid == cid_binary(RAW, hashlib.sha256(data).digest())
        assert ref.text.startswith("bafkrei")


def test_builder_refuses_reuse() -> None:
    builder = FileDagBuilder()
    builder.finish()
    with pytest.raises(RuntimeError):
        builder.update(b"more")


def test_dagpb_round_trip_and_canonical_order() -> None:
    link = PBLink(cid=cid_binary(RAW, bytes(32)), name="a", tsize=5)
    node = PBNode(links=(link,), data=UnixFsData(TYPE_DIRECTORY).encode())
    encoded = node.encode()
    assert encoded[0] == 0x12  # links (field 2) come before data (field 1)
    assert decode_node(encoded) == node
    assert decode_unixfs(node.data or b"").type == TYPE_DIRECTORY


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**35, 2**63])
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize(
    "block",
    [b"\x12", b"\x12\x05ab", b"\x0a\x02\x08\x05", b"\x1a\x00", b"\x0d\x00\x00\x00\x00"],
    ids=["truncated", "short-link", "data-only-ok", "unknown-field", "fixed32"],
)
def test_malformed_blocks_are_refused(block: bytes) -> None:
    if block == b"\x0a\x02\x08\x05":
        node = decode_node(block)  # valid dag-pb; its UnixFS type 5 (HAMT) is refused
        with pytest.raises(MalformedBlock):
            decode_unixfs(node.data or b"")
        return
    with pytest.raises(MalformedBlock):
        decode_node(block)


def test_unixfs_mode_and_mtime_are_refused() -> None:
    with pytest.raises(MalformedBlock):
        decode_unixfs(b"\x08\x02\x38\xa4\x03")  # mode 0644


def test_normalize_accepts_every_text_form() -> None:
    vector = VECTORS["files"][0]
    assert normalize_cid(vector["js-ipfs_printed_base58btc"]) == vector["cid"]
    assert normalize_cid(vector["cid"].upper()) == vector["cid"]
    # a CIDv0 names the same dag-pb node as its CIDv1
    v0 = VECTORS["files"][5]["cidv0_crosscheck"]["kubo"]
    assert parse_cid(normalize_cid(v0)).codec == DAG_PB
    assert result_digest(v0) == result_digest(normalize_cid(v0))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "bafyxx",
        # identity multihash, blake2b and dag-cbor CIDs are outside the profile
        "bafkqaaa",
        str(CID("base32", 1, "raw", multihash.digest(b"x", "blake2b-256"))),
        str(CID("base32", 1, "dag-cbor", multihash.digest(b"x", "sha2-256"))),
    ],
)
def test_invalid_cids_are_refused(text: str) -> None:
    with pytest.raises(InvalidCid):
        parse_cid(text)


def test_result_digest_is_the_sha256_inside() -> None:
    data = b"result"
    assert result_digest(hash_bytes(data).text) == hashlib.sha256(data).digest()


def test_too_many_entries_are_refused(tmp_path: Path) -> None:
    for i in range(MAX_DIRECTORY_ENTRIES + 1):
        (tmp_path / f"f{i}").touch()
    with pytest.raises(LayoutError, match="more than 1000"):
        path_ref(tmp_path)
    (tmp_path / "f0").unlink()
    assert len(list_directory(tmp_path)) == MAX_DIRECTORY_ENTRIES


def test_symlinks_and_long_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(LayoutError, match="symbolic"):
        path_ref(tmp_path)
    (tmp_path / "link").unlink()
    (tmp_path / ("n" * 201)).touch()
    with pytest.raises(LayoutError, match="longer than"):
        path_ref(tmp_path)


def test_directory_links_sort_by_utf8_bytes(tmp_path: Path) -> None:
    for name in ("b", "B", "é", "a.txt", "a"):
        (tmp_path / name).write_bytes(name.encode())
    names = [entry.name for entry in list_directory(tmp_path)]
    assert names == sorted(names, key=lambda n: n.encode("utf-8"))
    assert names[0] == "B" and names[-1] == "é"
