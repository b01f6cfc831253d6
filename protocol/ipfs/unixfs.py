"""UnixFS v1 DAGs in the fixed layout: file builders and directory nodes.

A file is cut into fixed-size chunks; each chunk is a raw block (or, in the CIDv0 profile
used only to cross-check Kubo's defaults, a dag-pb UnixFS leaf). Chunks are gathered
into a *balanced* tree of dag-pb nodes with at most ``max_links`` children each, exactly
as go-ipfs/boxo and js-ipfs's balanced builder do: a file of one chunk is that chunk's
block; otherwise the depth is the smallest that fits all chunks, every level is filled
left to right, and a partial trailing subtree still gets its own chain of nodes.

The builder is incremental (:meth:`FileDagBuilder.update`), so callers hash streams of
any size in constant memory, and it can hand every block it makes to a sink.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from protocol.ids import Cid
from protocol.ipfs.cid import DAG_PB, RAW, block_cid, cid_binary, cid_text
from protocol.ipfs.dagpb import PBLink, PBNode, field_bytes, field_varint, iter_fields
from protocol.ipfs.errors import MalformedBlock

TYPE_RAW = 0
TYPE_DIRECTORY = 1
TYPE_FILE = 2

BlockSink = Callable[[bytes, bytes], None]
"""Receives ``(binary_cid, block)`` for every block a builder creates."""


@dataclass(frozen=True)
class Layout:
    """How content is cut and linked. :data:`PROFILE` is the only one we publish."""

    chunk_size: int = 262_144
    max_links: int = 174
    raw_leaves: bool = True
    cid_version: int = 1


PROFILE = Layout()
"""CIDv1, raw leaves, sha2-256, 256 KiB chunks, 174 links per node."""

KUBO_DEFAULTS = Layout(raw_leaves=False, cid_version=0)
"""Kubo's defaults (CIDv0, dag-pb leaves): only for cross-checking tree shape."""


@dataclass(frozen=True)
class DagRef:
    """The root of a DAG: binary CID, cumulative DAG size, and content bytes beneath."""

    cid: bytes
    tsize: int
    size: int

    @property
    def text(self) -> Cid:
        return cid_text(self.cid)


@dataclass(frozen=True)
class UnixFsData:
    type: int
    data: bytes = b""
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()

    def encode(self) -> bytes:
        out = field_varint(1, self.type)
        if self.data:
            out += field_bytes(2, self.data)
        if self.filesize is not None:
            out += field_varint(3, self.filesize)
        for size in self.blocksizes:
            out += field_varint(4, size)
        return out


def decode_unixfs(buf: bytes) -> UnixFsData:
    """Parse UnixFS ``Data``; refuse HAMT shards, symlinks, mode and mtime."""
    kind: int | None = None
    data = b""
    filesize: int | None = None
    blocksizes: list[int] = []
    for number, value in iter_fields(buf):
        if number == 1 and isinstance(value, int):
            kind = value
        elif number == 2 and isinstance(value, bytes):
            data = value
        elif number == 3 and isinstance(value, int):
            filesize = value
        elif number == 4 and isinstance(value, int):
            blocksizes.append(value)
        else:
            raise MalformedBlock(f"UnixFS field {number} is outside the fixed layout")
    if kind not in (TYPE_RAW, TYPE_DIRECTORY, TYPE_FILE):
        raise MalformedBlock(f"UnixFS type {kind} is outside the fixed layout")
    return UnixFsData(type=kind, data=data, filesize=filesize, blocksizes=tuple(blocksizes))


@dataclass
class _Child:
    cid: bytes
    tsize: int
    size: int


@dataclass
class FileDagBuilder:
    """Hash a file incrementally into the balanced layout; ``finish()`` gives the root."""

    layout: Layout = PROFILE
    sink: BlockSink | None = None
    _hasher: Any = field(default_factory=hashlib.sha256)
    _pending: int = 0
    _buffer: bytearray = field(default_factory=bytearray)
    _levels: list[list[_Child]] = field(default_factory=lambda: [[]])
    _seen: int = 0
    _finished: bool = False

    @property
    def bytes_seen(self) -> int:
        return self._seen

    @property
    def _keeps_chunks(self) -> bool:
        # Raw leaves nobody stores are hashed as the bytes stream by, never copied.
        return self.sink is not None or not self.layout.raw_leaves

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._finished:
            raise RuntimeError("builder already finished")
        chunk = self.layout.chunk_size
        keep = self._keeps_chunks
        view = memoryview(data).cast("B")
        self._seen += len(view)
        while len(view):
            # A chunk is closed only when more bytes arrive, so a stream that ends on
            # a chunk boundary does not gain an empty trailing leaf.
            if self._pending == chunk:
                self._close_chunk()
            take = min(chunk - self._pending, len(view))
            if keep:
                self._buffer += view[:take]
            else:
                self._hasher.update(view[:take])
            self._pending += take
            view = view[take:]

    def finish(self) -> DagRef:
        if self._finished:
            raise RuntimeError("builder already finished")
        self._finished = True
        if self._pending or self._seen == 0:
            self._close_chunk()
        levels = self._levels
        depth = 0
        while True:
            items = levels[depth]
            top = all(not level for level in levels[depth + 1 :])
            if top and len(items) == 1:
                child = items[0]
                return DagRef(cid=child.cid, tsize=child.tsize, size=child.size)
            node = self._node(items)
            levels[depth] = []
            self._push(depth + 1, node)
            depth += 1

    def _close_chunk(self) -> None:
        size = self._pending
        if not self._keeps_chunks:
            cid = cid_binary(RAW, self._hasher.digest(), self.layout.cid_version)
            self._hasher = hashlib.sha256()
            block_size = size
        else:
            chunk = bytes(self._buffer)
            self._buffer.clear()
            if self.layout.raw_leaves:
                block, codec = chunk, RAW
            else:
                data = UnixFsData(TYPE_FILE, data=chunk, filesize=size).encode()
                block, codec = PBNode(links=(), data=data).encode(), DAG_PB
            cid = block_cid(codec, block, self.layout.cid_version)
            if self.sink is not None:
                self.sink(cid, block)
            block_size = len(block)
        self._pending = 0
        self._push(0, _Child(cid=cid, tsize=block_size, size=size))

    def _push(self, depth: int, child: _Child) -> None:
        if depth == len(self._levels):
            self._levels.append([])
        level = self._levels[depth]
        # A full level is only closed when more content arrives, so that a file of
        # exactly max_links chunks keeps a single root node.
        if len(level) == self.layout.max_links:
            node = self._node(level)
            self._levels[depth] = level = []
            self._push(depth + 1, node)
        level.append(child)

    def _node(self, children: list[_Child]) -> _Child:
        size = sum(c.size for c in children)
        data = UnixFsData(TYPE_FILE, filesize=size, blocksizes=tuple(c.size for c in children))
        links = tuple(PBLink(cid=c.cid, name="", tsize=c.tsize) for c in children)
        block = PBNode(links=links, data=data.encode()).encode()
        cid = block_cid(DAG_PB, block, self.layout.cid_version)
        if self.sink is not None:
            self.sink(cid, block)
        return _Child(cid=cid, tsize=len(block) + sum(c.tsize for c in children), size=size)


def hash_bytes(data: bytes, layout: Layout = PROFILE, sink: BlockSink | None = None) -> DagRef:
    builder = FileDagBuilder(layout=layout, sink=sink)
    builder.update(data)
    return builder.finish()


def directory_block(entries: Iterable[tuple[str, DagRef]]) -> bytes:
    """The dag-pb block of a directory; links sorted by the UTF-8 bytes of their names."""
    ordered = sorted(entries, key=lambda entry: entry[0].encode("utf-8"))
    links = tuple(PBLink(cid=ref.cid, name=name, tsize=ref.tsize) for name, ref in ordered)
    return PBNode(links=links, data=UnixFsData(TYPE_DIRECTORY).encode()).encode()


def directory_ref(
    entries: Iterable[tuple[str, DagRef]],
    layout: Layout = PROFILE,
    sink: BlockSink | None = None,
) -> DagRef:
    """Build a directory node over already-hashed children and return its root."""
    listed = list(entries)
    block = directory_block(listed)
    cid = block_cid(DAG_PB, block, layout.cid_version)
    if sink is not None:
        sink(cid, block)
    return DagRef(
        cid=cid,
        tsize=len(block) + sum(ref.tsize for _, ref in listed),
        size=sum(ref.size for _, ref in listed),
    )
