"""One conformance suite for every ContentStore: the in-memory fake and a real daemon."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from multiformats import CID

from protocol.ipfs import (
    ContentStore,
    ContentTooLarge,
    DestinationExists,
    KuboContentStore,
    LayoutError,
    MemoryContentStore,
    hash_bytes,
    path_ref,
)
from protocol.ipfs.cid import RAW, cid_binary, cid_text
from protocol.ipfs.local import MAX_DIRECTORY_ENTRIES, file_ref

CHUNK = 262_144
StoreFactory = Callable[[], AbstractAsyncContextManager[Any]]


def noise(size: int, seed: int = 0) -> bytes:
    """Non-repeating content, so that chunk order and boundaries all matter."""
    return hashlib.shake_256(f"{seed}:{size}".encode()).digest(size)


def make_tree(root: Path) -> None:
    (root / "x" / "y").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "x" / "y" / "z.txt").write_bytes(noise(5, 1))
    (root / "top.bin").write_bytes(noise(CHUNK + 1, 2))
    (root / "ünï code.txt").write_bytes(noise(3, 3))
    (root / "a+b%c d.txt").write_bytes(noise(0, 4))
    (root / ".hidden").write_bytes(noise(10, 5))


def tree_files(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def _both_conform(kubo: KuboContentStore, memory: MemoryContentStore) -> list[ContentStore]:
    return [kubo, memory]  # mypy checks each against the Protocol


@pytest.fixture(params=["memory", pytest.param("daemon", marks=pytest.mark.integration)])
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    if request.param == "memory":
        return MemoryContentStore
    node = request.getfixturevalue("ipfs")
    return lambda: KuboContentStore(node.api_url, timeout=30.0)


@pytest.mark.timeout(120)
class TestContentStoreConformance:
    @pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
    async def test_bytes_round_trip(self, make_store: StoreFactory, size: int) -> None:
        data = noise(size)
        store: ContentStore
        async with make_store() as store:
            cid = await store.add_bytes(data)
            assert cid == hash_bytes(data).text
            assert await store.read_bytes(cid) == data
            assert await store.size(cid) == size
            assert await store.has(cid)

    async def test_large_file_across_the_link_boundary(
        self, make_store: StoreFactory, tmp_path: Path
    ) -> None:
        # 174 chunks + 1 byte: the smallest file with a two-level tree
        src = tmp_path / "big.bin"
        with open(src, "wb") as handle:
            for i in range(174):
                handle.write(noise(CHUNK, i))
            handle.write(b"!")
        async with make_store() as store:
            cid = await store.add_file(src)
            assert cid == file_ref(src).text
            out = await store.get(cid, tmp_path / "out.bin")
            assert out.read_bytes() == src.read_bytes()
            assert await store.size(cid) == 174 * CHUNK + 1

    async def test_cat_streams_in_pieces(self, make_store: StoreFactory) -> None:
        data = noise(2 * CHUNK + 3)
        async with make_store() as store:
            cid = await store.add_bytes(data)
            pieces = [piece async for piece in store.cat(cid)]
            assert b"".join(pieces) == data
            assert len(pieces) > 1

    async def test_directory_round_trip(self, make_store: StoreFactory, tmp_path: Path) -> None:
        src = tmp_path / "src"
        make_tree(src)
        async with make_store() as store:
            cid = await store.add_directory(src)
            assert cid == path_ref(src).text
            out = await store.get(cid, tmp_path / "out")
            assert tree_files(out) == tree_files(src)
            assert path_ref(out).text == cid
            assert await store.size(cid) > CHUNK

    async def test_any_text_form_of_a_cid_is_accepted(self, make_store: StoreFactory) -> None:
        data = noise(CHUNK + 9)
        async with make_store() as store:
            cid = await store.add_bytes(data)
            other = CID.decode(cid).encode("base58btc")
            assert other.startswith("z")
            assert await store.read_bytes(other) == data

    async def test_download_cap_refuses_and_leaves_nothing(
        self, make_store: StoreFactory, tmp_path: Path
    ) -> None:
        data = noise(CHUNK + 10)
        async with make_store() as store:
            cid = await store.add_bytes(data)
            with pytest.raises(ContentTooLarge):
                await store.read_bytes(cid, max_size=len(data) - 1)
            with pytest.raises(ContentTooLarge):
                await store.get(cid, tmp_path / "out", max_size=len(data) - 1)
            assert list(tmp_path.iterdir()) == []
            assert await store.read_bytes(cid, max_size=len(data)) == data

    async def test_directory_cap_counts_all_files(
        self, make_store: StoreFactory, tmp_path: Path
    ) -> None:
        src = tmp_path / "src"
        src.mkdir()
        for i in range(3):
            (src / f"part{i}").write_bytes(noise(1000, i))
        async with make_store() as store:
            cid = await store.add_directory(src)
            dest = tmp_path / "dest"
            dest.mkdir()
            with pytest.raises(ContentTooLarge):
                await store.get(cid, dest / "out", max_size=2500)
            assert list(dest.iterdir()) == []
            await store.get(cid, dest / "out", max_size=3000)

    async def test_get_never_overwrites(self, make_store: StoreFactory, tmp_path: Path) -> None:
        (tmp_path / "taken").write_bytes(b"mine")
        async with make_store() as store:
            cid = await store.add_bytes(b"theirs")
            with pytest.raises(DestinationExists):
                await store.get(cid, tmp_path / "taken")
        assert (tmp_path / "taken").read_bytes() == b"mine"

    async def test_cat_of_a_directory_is_refused(
        self, make_store: StoreFactory, tmp_path: Path
    ) -> None:
        (tmp_path / "f").write_bytes(b"x")
        async with make_store() as store:
            cid = await store.add_directory(tmp_path)
            with pytest.raises(LayoutError, match="directory"):
                await store.read_bytes(cid)

    async def test_has_pin_and_absent_content(self, make_store: StoreFactory) -> None:
        absent = cid_text(cid_binary(RAW, hashlib.sha256(os.urandom(16)).digest()))
        async with make_store() as store:
            cid = await store.add_bytes(noise(100), pin=False)
            await store.pin(cid)
            assert await store.has(cid)
            assert not await store.has(absent)

    async def test_unrepresentable_directory_is_refused(
        self, make_store: StoreFactory, tmp_path: Path
    ) -> None:
        for i in range(MAX_DIRECTORY_ENTRIES + 1):
            (tmp_path / f"f{i}").touch()
        async with make_store() as store:
            with pytest.raises(LayoutError):
                await store.add_directory(tmp_path)

    async def test_wrong_kind_of_path_is_refused(
        self, make_store: StoreFactory, tmp_path: Path
    ) -> None:
        (tmp_path / "f").write_bytes(b"x")
        async with make_store() as store:
            with pytest.raises(LayoutError, match="not a directory"):
                await store.add_directory(tmp_path / "f")
            with pytest.raises(LayoutError, match="not a regular file"):
                await store.add_file(tmp_path)
            with pytest.raises(LayoutError):
                await store.add_file(tmp_path / "missing")

    async def test_empty_directory(self, make_store: StoreFactory, tmp_path: Path) -> None:
        (tmp_path / "src").mkdir()
        async with make_store() as store:
            cid = await store.add_directory(tmp_path / "src")
            assert cid == path_ref(tmp_path / "src").text
            out = await store.get(cid, tmp_path / "out")
            assert out.is_dir() and list(out.iterdir()) == []
