"""An in-memory content store for unit tests, faithful to the real one.

It keeps real blocks under real CIDs (built by the same layout code a daemon's output is
checked against) and serves downloads through the same verification path as
:class:`~protocol.ipfs.kubo.KuboContentStore`, so a test can corrupt :attr:`blocks` and
see the refusal a tampered daemon would cause.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path

from protocol.ids import Cid
from protocol.ipfs import fetch
from protocol.ipfs.cid import RAW, cid_binary, parse_cid, parse_cid_binary
from protocol.ipfs.dagpb import decode_node
from protocol.ipfs.errors import ContentNotFound, ContentTooLarge, MalformedBlock
from protocol.ipfs.local import directory_ref_of, file_ref, require
from protocol.ipfs.store import DEFAULT_MAX_SIZE
from protocol.ipfs.unixfs import TYPE_DIRECTORY, decode_unixfs, hash_bytes

MAX_FAKE_DEPTH = 64


class MemoryContentStore:
    """A :class:`~protocol.ipfs.store.ContentStore` holding blocks in a dict."""

    def __init__(self) -> None:
        self.blocks: dict[bytes, bytes] = {}
        """Binary CID (CIDv1) to block bytes; tests may tamper with it."""
        self.pins: set[bytes] = set()

    async def __aenter__(self) -> MemoryContentStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def _put(self, cid: bytes, block: bytes) -> None:
        self.blocks[cid] = block

    def _key(self, cid: str) -> bytes:
        parsed = parse_cid(cid)
        return cid_binary(parsed.codec, parsed.digest, 1)

    async def add_bytes(self, data: bytes, *, pin: bool = True) -> Cid:
        return self._added(hash_bytes(data, sink=self._put).cid, pin)

    async def add_file(self, path: Path, *, pin: bool = True) -> Cid:
        require(path, directory=False)
        return self._added(file_ref(path, sink=self._put).cid, pin)

    async def add_directory(self, path: Path, *, pin: bool = True) -> Cid:
        return self._added(directory_ref_of(path, sink=self._put).cid, pin)

    def _added(self, cid: bytes, pin: bool) -> Cid:
        if pin:
            self.pins.add(cid)
        return parse_cid_binary(cid).text

    async def fetch_block(self, cid: Cid, *, max_size: int) -> bytes:
        block = self.blocks.get(self._key(cid))
        if block is None:
            raise ContentNotFound(cid)
        if len(block) > max_size:
            raise ContentTooLarge(cid, max_size)
        return block

    async def fetch_file(self, cid: Cid) -> AsyncGenerator[bytes, None]:
        """Walk the stored file DAG in order, like a daemon's ``cat`` (unverified)."""
        for piece in self._leaves(self._key(cid), 0):
            yield piece

    def _leaves(self, key: bytes, depth: int) -> Iterator[bytes]:
        if depth > MAX_FAKE_DEPTH:
            raise MalformedBlock("file DAG too deep")
        block = self.blocks.get(key)
        if block is None:
            raise ContentNotFound(parse_cid_binary(key).text)
        if key[1] == RAW:
            yield block
            return
        node = decode_node(block)
        unixfs = decode_unixfs(node.data or b"")
        if unixfs.type == TYPE_DIRECTORY:
            raise MalformedBlock("a directory where file data was expected")
        if unixfs.data:
            yield unixfs.data
        for link in node.links:
            child = parse_cid_binary(link.cid)
            yield from self._leaves(cid_binary(child.codec, child.digest, 1), depth + 1)

    async def cat(self, cid: str, *, max_size: int = DEFAULT_MAX_SIZE) -> AsyncIterator[bytes]:
        async for piece in fetch.verified_cat(self, cid, max_size):
            yield piece

    async def read_bytes(self, cid: str, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
        return await fetch.read_verified(self, cid, max_size)

    async def get(
        self,
        cid: str,
        dest: Path,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        max_entries: int = fetch.MAX_ENTRIES,
    ) -> Path:
        return await fetch.get_verified(self, cid, dest, max_size, max_entries)

    async def size(self, cid: str) -> int:
        return await fetch.content_size(self, cid)

    async def pin(self, cid: str) -> None:
        key = self._key(cid)
        if key not in self.blocks:
            raise ContentNotFound(cid)
        self.pins.add(key)

    async def unpin(self, cid: str) -> None:
        self.pins.discard(self._key(cid))

    async def has(self, cid: str) -> bool:
        return self._key(cid) in self.blocks
