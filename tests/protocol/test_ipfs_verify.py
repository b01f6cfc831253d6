"""Downloads are verified against their CID, capped, and daemon failures are translated.

A fake daemon behind ``httpx.MockTransport`` serves real blocks from a
MemoryContentStore, and each test makes it lie in one way.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import trio

from protocol.ids import Cid
from protocol.ipfs import (
    CidMismatch,
    ContentNotFound,
    ContentTooLarge,
    ContentUnavailable,
    DaemonError,
    KuboContentStore,
    MemoryContentStore,
    TooManyEntries,
    hash_bytes,
    path_ref,
)
from protocol.ipfs.cid import parse_cid, parse_cid_binary
from protocol.ipfs.kubo import ADD_PARAMS

CHUNK = 262_144


def noise(size: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(f"{seed}:{size}".encode()).digest(size)


class LyingDaemon:
    """Answers the RPC endpoints from a real block store, with optional lies."""

    def __init__(self) -> None:
        self.store = MemoryContentStore()
        self.calls: list[str] = []
        self.cat_override: dict[str, Callable[[bytes], bytes | AsyncIterator[bytes]]] = {}
        self.block_override: dict[str, bytes] = {}
        self.add_reply: bytes = b""
        self.add_requests: list[httpx.Request] = []
        self.add_bodies: list[bytes] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.removeprefix("/api/v0/")
        self.calls.append(endpoint)
        arg = request.url.params.get("arg", "")
        if endpoint == "add":
            self.add_requests.append(request)
            self.add_bodies.append(await request.aread())
            return httpx.Response(200, content=self.add_reply)
        if not arg:
            return httpx.Response(404, text="404 page not found")
        key = parse_cid(arg).binary
        if endpoint == "block/get":
            if arg in self.block_override:
                return httpx.Response(200, content=self.block_override[arg])
            if key not in self.store.blocks:
                return httpx.Response(500, json={"Message": "block not found", "Type": "error"})
            return httpx.Response(200, content=self.store.blocks[key])
        if endpoint == "cat":
            data = b"".join(self.store._leaves(key, 0))
            lie = self.cat_override.get(arg)
            return httpx.Response(200, content=lie(data) if lie else data)
        return httpx.Response(404, text="404 page not found")


@pytest.fixture
def daemon() -> LyingDaemon:
    return LyingDaemon()


def client(daemon: LyingDaemon) -> KuboContentStore:
    return KuboContentStore("http://ipfs.test:5001", transport=daemon.transport())


async def test_honest_daemon_passes(daemon: LyingDaemon, tmp_path: Path) -> None:
    data = noise(3 * CHUNK + 1)
    cid = await daemon.store.add_bytes(data)
    async with client(daemon) as store:
        assert await store.read_bytes(cid) == data
        assert (await store.get(cid, tmp_path / "f")).read_bytes() == data


@pytest.mark.parametrize("size", [5, 3 * CHUNK + 1], ids=["raw-block", "multi-chunk"])
async def test_wrong_bytes_are_refused(daemon: LyingDaemon, tmp_path: Path, size: int) -> None:
    data = noise(size)
    cid = await daemon.store.add_bytes(data)
    # flip one byte in the middle of the file
    daemon.cat_override[cid] = lambda d: (
        d[: size // 2] + bytes([d[size // 2] ^ 1]) + d[size // 2 + 1 :]
    )
    async with client(daemon) as store:
        with pytest.raises(CidMismatch) as refused:
            await store.read_bytes(cid)
        assert refused.value.expected == cid
        with pytest.raises(CidMismatch):
            await store.get(cid, tmp_path / "f")
    assert list(tmp_path.iterdir()) == []


async def test_streamed_cat_raises_at_the_end(daemon: LyingDaemon) -> None:
    cid = await daemon.store.add_bytes(noise(2 * CHUNK))
    daemon.cat_override[cid] = lambda d: d[:-1] + b"?"
    received = 0
    async with client(daemon) as store:
        with pytest.raises(CidMismatch):
            async for piece in store.cat(cid):
                received += len(piece)
    assert received == 2 * CHUNK


async def test_truncated_file_is_refused(daemon: LyingDaemon) -> None:
    cid = await daemon.store.add_bytes(noise(2 * CHUNK))
    daemon.cat_override[cid] = lambda d: d[:CHUNK]
    async with client(daemon) as store:
        with pytest.raises(CidMismatch):
            await store.read_bytes(cid)


async def test_wrong_root_block_is_refused(daemon: LyingDaemon) -> None:
    cid = await daemon.store.add_bytes(noise(2 * CHUNK))
    other = await daemon.store.add_bytes(noise(2 * CHUNK, seed=9))
    daemon.block_override[cid] = daemon.store.blocks[parse_cid(other).binary]
    async with client(daemon) as store:
        with pytest.raises(CidMismatch) as refused:
            await store.size(cid)
        assert refused.value.actual == other


async def test_directory_with_one_tampered_file_is_refused(
    daemon: LyingDaemon, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    (src / "sub" / "b.bin").write_bytes(noise(CHUNK + 3))
    cid = await daemon.store.add_directory(src)
    inner = hash_bytes(noise(CHUNK + 3)).text
    daemon.cat_override[inner] = lambda d: d[::-1]
    dest = tmp_path / "dest"
    dest.mkdir()
    async with client(daemon) as store:
        with pytest.raises(CidMismatch):
            await store.get(cid, dest / "out")
    assert list(dest.iterdir()) == []
    del daemon.cat_override[inner]
    async with client(daemon) as store:
        out = await store.get(cid, dest / "out")
    assert path_ref(out).text == cid


async def test_endless_stream_stops_at_the_cap(daemon: LyingDaemon) -> None:
    cid = await daemon.store.add_bytes(b"small")
    sent = 0

    async def endless(_: bytes) -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 65536
            yield bytes(65536)

    daemon.cat_override[cid] = endless
    async with client(daemon) as store:
        with pytest.raises(ContentTooLarge):
            await store.read_bytes(cid, max_size=1 << 20)
    assert sent <= (1 << 20) + 2 * 65536


async def test_declared_size_over_the_cap_is_refused_before_download(
    daemon: LyingDaemon, tmp_path: Path
) -> None:
    cid = await daemon.store.add_bytes(noise(3 * CHUNK))
    async with client(daemon) as store:
        with pytest.raises(ContentTooLarge):
            await store.get(cid, tmp_path / "f", max_size=CHUNK)
    assert "cat" not in daemon.calls


async def test_add_is_streamed_with_the_layout_options(daemon: LyingDaemon, tmp_path: Path) -> None:
    src = tmp_path / "d"
    (src / "e").mkdir(parents=True)
    (src / "f.txt").write_bytes(b"hello")
    expected = path_ref(src).text
    daemon.add_reply = (
        json.dumps({"Name": "content/f.txt", "Hash": hash_bytes(b"hello").text}).encode()
        + b"\n"
        + json.dumps({"Name": "content", "Hash": expected}).encode()
        + b"\n"
    )
    async with client(daemon) as store:
        assert await store.add_directory(src) == expected
    request = daemon.add_requests[0]
    for key, value in ADD_PARAMS.items():
        assert request.url.params[key] == value
    assert request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in request.headers
    body = daemon.add_bodies[0]
    boundary = request.headers["content-type"].split("boundary=")[1]
    parts = body.split(f"--{boundary}".encode())[1:-1]
    assert len(parts) == 3
    for part in parts:
        assert re.search(rb"\r\nContent-Type: [a-z/-]+\r\n", part)
    assert b'filename="content%2Fe"' in parts[1] and b"application/x-directory" in parts[1]


async def test_add_refuses_a_cid_other_than_the_layouts(daemon: LyingDaemon) -> None:
    daemon.add_reply = json.dumps({"Name": "data", "Hash": hash_bytes(b"other").text}).encode()
    async with client(daemon) as store:
        with pytest.raises(CidMismatch) as refused:
            await store.add_bytes(b"mine")
    assert refused.value.expected == hash_bytes(b"mine").text


@pytest.mark.parametrize(
    "reply",
    [b'{"Message": "failed to add", "Code": 0, "Type": "error"}\n', b"<html>", b""],
    ids=["error-object", "not-json", "empty"],
)
async def test_bad_add_replies_are_daemon_errors(daemon: LyingDaemon, reply: bytes) -> None:
    daemon.add_reply = reply
    async with client(daemon) as store:
        with pytest.raises(DaemonError):
            await store.add_bytes(b"x")


async def test_missing_block_is_not_found(daemon: LyingDaemon) -> None:
    absent = hash_bytes(noise(2 * CHUNK, seed=5)).text
    async with client(daemon) as store:
        with pytest.raises(ContentNotFound) as missing:
            await store.size(absent)
        assert missing.value.cid == absent
        with pytest.raises(DaemonError, match="HTTP 404"):
            await store.node_id()


async def test_unreachable_daemon_names_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with KuboContentStore(url, timeout=2.0) as store:
        with pytest.raises(ContentUnavailable) as unavailable:
            await store.add_bytes(b"x")
    assert unavailable.value.api_url == url
    assert url in str(unavailable.value)


async def test_timeout_is_unavailable() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    async with KuboContentStore("http://ipfs.test", transport=httpx.MockTransport(hang)) as store:
        with pytest.raises(ContentUnavailable, match="no answer within"):
            await store.read_bytes(hash_bytes(b"x").text)


async def test_tampered_memory_store_is_refused() -> None:
    async with MemoryContentStore() as store:
        cid = await store.add_bytes(noise(CHUNK + 1))
        leaf = hash_bytes(noise(CHUNK + 1)[:CHUNK]).cid
        store.blocks[leaf] = bytes(CHUNK)
        with pytest.raises(CidMismatch):
            await store.read_bytes(cid)


def _dag_bomb(store: MemoryContentStore, width: int, levels: int) -> str:
    """A tree of ``levels`` directories, each naming the level below ``width`` times: a
    handful of blocks that expand to width**levels files."""
    from protocol.ipfs.unixfs import directory_ref

    ref = hash_bytes(b"x", sink=store._put)
    for _ in range(levels):
        ref = directory_ref([(f"e{i:04d}", ref) for i in range(width)], sink=store._put)
    return parse_cid_binary(ref.cid).text


async def test_a_small_dag_naming_one_subtree_many_times_is_refused(tmp_path: Path) -> None:
    async with MemoryContentStore() as store:
        cid = _dag_bomb(store, width=1000, levels=2)  # 3 blocks, a million files
        assert len(store.blocks) == 3
        with pytest.raises(TooManyEntries) as err:
            await store.get(cid, tmp_path / "out", max_entries=5000)
        assert "5000" in str(err.value)
        # refused at the second directory's block: nothing like a million files was written
        written = sum(1 for _ in (tmp_path).rglob("*"))
        assert written <= 5000
        assert not (tmp_path / "out").exists()


async def test_a_tree_within_the_entry_limit_downloads(tmp_path: Path) -> None:
    async with MemoryContentStore() as store:
        cid = _dag_bomb(store, width=10, levels=2)  # 1 + 10 + 100 entries
        out = await store.get(cid, tmp_path / "out", max_entries=111)
        assert sum(1 for _ in out.rglob("*")) == 110
        with pytest.raises(TooManyEntries):
            await store.get(cid, tmp_path / "again", max_entries=110)


async def test_a_directorys_entries_are_fetched_at_once_within_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each entry of a directory is a network round trip or more: they overlap, never more
    than ENTRY_FETCHES of one download at a time, and the tree still verifies whole."""
    from protocol.ipfs import fetch
    from protocol.ipfs.memory import MemoryContentStore

    monkeypatch.setattr(fetch, "ENTRY_FETCHES", 3)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(6):
        (src / f"f{i}.bin").write_bytes(noise(100 + i, seed=i))
        (src / "sub" / f"g{i}.bin").write_bytes(noise(50 + i, seed=10 + i))
    store = MemoryContentStore()
    cid = await store.add_directory(src)
    busy, most = 0, 0
    served = store.fetch_file

    async def slow_file(file_cid: Cid) -> AsyncIterator[bytes]:
        nonlocal busy, most
        busy += 1
        most = max(most, busy)
        await trio.sleep(0.05)  # a round trip: the others may start meanwhile
        async for piece in served(file_cid):
            yield piece
        busy -= 1

    monkeypatch.setattr(store, "fetch_file", slow_file)
    out = await store.get(cid, tmp_path / "out")
    assert path_ref(out).text == cid
    assert most == 3  # overlapping, and bounded
    # A subdirectory holds no slot while its own entries wait for one: even one slot
    # cannot deadlock a nested tree.
    monkeypatch.setattr(fetch, "ENTRY_FETCHES", 1)
    with trio.fail_after(10):
        again = await store.get(cid, tmp_path / "again")
    assert path_ref(again).text == cid
