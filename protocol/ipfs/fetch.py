"""Verified, size-capped downloads over any source of (untrusted) blocks and file bytes.

A source only moves bytes; it is never trusted. Root and directory blocks are checked
against their CID's digest before they are decoded. File bytes are re-hashed into the
fixed layout while they stream and the resulting root must equal the CID asked for.
A directory is rebuilt from its verified children and its node must hash to the CID
too, so any content outside the layout is refused as well. Downloads go to a temporary
sibling of the destination and are renamed into place only once everything verified.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import trio

from protocol.errors import leaves
from protocol.ids import Cid
from protocol.ipfs.cid import DAG_PB, RAW, ParsedCid, cid_binary, cid_text, parse_cid
from protocol.ipfs.cid import parse_cid_binary as cid_from_link
from protocol.ipfs.dagpb import PBNode, decode_node
from protocol.ipfs.errors import (
    CidMismatch,
    ContentTooLarge,
    DestinationExists,
    LayoutError,
    MalformedBlock,
    TooManyEntries,
)
from protocol.ipfs.local import MAX_DEPTH, MAX_DIRECTORY_ENTRIES, check_name
from protocol.ipfs.unixfs import (
    TYPE_DIRECTORY,
    DagRef,
    FileDagBuilder,
    UnixFsData,
    decode_unixfs,
    directory_ref,
)

MAX_NODE_BLOCK = 1 << 20
"""Largest dag-pb block accepted (a full directory of long names is ~240 KB)."""
MAX_ENTRIES = 100_000
"""Files and directories one download may create, whatever their size."""
ENTRY_FETCHES = 8
"""Directory entries one download fetches at once (each is a network round trip or more,
through the daemon's bitswap: a small result directory's entries are no longer one after
another)."""


class BlockSource(Protocol):
    """Where untrusted bytes come from: single blocks, and the concatenated bytes of a file."""

    async def fetch_block(self, cid: Cid, *, max_size: int) -> bytes: ...

    def fetch_file(self, cid: Cid) -> AsyncGenerator[bytes, None]: ...


@dataclass
class Budget:
    """What one download may still create: content bytes (all files of a tree together)
    and entries (files plus directories)."""

    cid: str
    limit: int
    used: int = 0
    max_entries: int = MAX_ENTRIES
    entries: int = 0
    fetches: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(ENTRY_FETCHES)
    )
    """Directory entries of this download being fetched at once."""

    def spend(self, amount: int) -> None:
        self.used += amount
        if self.used > self.limit:
            raise ContentTooLarge(self.cid, self.limit)

    def enter(self, count: int = 1) -> None:
        self.entries += count
        if self.entries > self.max_entries:
            raise TooManyEntries(self.cid, self.max_entries)


class FileVerifier:
    """Re-hashes streamed file bytes; :meth:`finish` refuses a root other than expected."""

    def __init__(self, expected: ParsedCid, budget: Budget) -> None:
        self._expected = cid_binary(expected.codec, expected.digest, 1)
        self._budget = budget
        self._builder = FileDagBuilder()

    def update(self, piece: bytes) -> None:
        self._budget.spend(len(piece))
        self._builder.update(piece)

    def finish(self) -> DagRef:
        ref = self._builder.finish()
        if ref.cid != self._expected:
            raise CidMismatch(cid_text(self._expected), ref.text)
        return ref


async def verified_block(source: BlockSource, cid: ParsedCid) -> bytes:
    block = await source.fetch_block(cid.text, max_size=MAX_NODE_BLOCK)
    digest = hashlib.sha256(block).digest()
    if digest != cid.digest:
        raise CidMismatch(cid.text, cid_text(cid_binary(cid.codec, digest, 1)))
    return block


async def _root(source: BlockSource, cid: ParsedCid) -> tuple[PBNode, UnixFsData] | None:
    """Decode a dag-pb root (None for a raw block, which is always a whole file)."""
    if cid.codec == RAW:
        return None
    block = await verified_block(source, cid)
    node = decode_node(block)
    if node.data is None:
        raise MalformedBlock(f"{cid.text} has no UnixFS data")
    return node, decode_unixfs(node.data)


async def verified_cat(source: BlockSource, cid: str, max_size: int) -> AsyncIterator[bytes]:
    """Yield a file's bytes; raise at the end if they do not hash to ``cid``."""
    parsed = parse_cid(cid)
    budget = Budget(cid, max_size)
    root = await _root(source, parsed)
    if root is not None:
        _check_file_root(parsed, root[1], budget)
    verifier = FileVerifier(parsed, budget)
    # aclosing: a refused stream is closed at once, not whenever it is collected
    async with aclosing(source.fetch_file(parsed.text)) as pieces:
        async for piece in pieces:
            verifier.update(piece)
            yield piece
    verifier.finish()


def _check_file_root(cid: ParsedCid, unixfs: UnixFsData, budget: Budget) -> None:
    if unixfs.type == TYPE_DIRECTORY:
        raise LayoutError(cid.text, "is a directory, not a file")
    # Refuse an oversized file before downloading any of it.
    if unixfs.filesize is not None and budget.used + unixfs.filesize > budget.limit:
        raise ContentTooLarge(budget.cid, budget.limit)


async def read_verified(source: BlockSource, cid: str, max_size: int) -> bytes:
    out = bytearray()
    async for piece in verified_cat(source, cid, max_size):
        out += piece
    return bytes(out)


async def get_verified(
    source: BlockSource, cid: str, dest: Path, max_size: int, max_entries: int = MAX_ENTRIES
) -> Path:
    """Download a file or directory to ``dest`` with every byte verified, creating at most
    ``max_entries`` files and directories."""
    parsed = parse_cid(cid)
    if dest.exists() or dest.is_symlink():
        raise DestinationExists(str(dest))
    budget = Budget(cid, max_size, max_entries=max_entries)
    budget.enter()  # the root itself
    temp = dest.parent / f".{dest.name}.partial-{secrets.token_hex(4)}"
    try:
        await _fetch_any(source, parsed, await _root(source, parsed), temp, budget, 0)
        os.rename(temp, dest)
    except BaseException:
        if temp.is_dir() and not temp.is_symlink():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
        raise
    return dest


async def content_size(source: BlockSource, cid: str) -> int:
    parsed = parse_cid(cid)
    if parsed.codec == RAW:
        return len(await verified_block(source, parsed))
    block = await verified_block(source, parsed)
    node = decode_node(block)
    unixfs = decode_unixfs(node.data or b"")
    if unixfs.type == TYPE_DIRECTORY:
        return len(block) + sum(link.tsize for link in node.links)
    return unixfs.filesize if unixfs.filesize is not None else len(unixfs.data)


async def _fetch_any(
    source: BlockSource,
    cid: ParsedCid,
    root: tuple[PBNode, UnixFsData] | None,
    dest: Path,
    budget: Budget,
    depth: int,
) -> DagRef:
    if root is not None and root[1].type == TYPE_DIRECTORY:
        return await _fetch_directory(source, cid, root[0], dest, budget, depth)
    if root is not None:
        _check_file_root(cid, root[1], budget)
    verifier = FileVerifier(cid, budget)
    with open(dest, "xb") as handle:
        async with aclosing(source.fetch_file(cid.text)) as pieces:
            async for piece in pieces:
                verifier.update(piece)
                handle.write(piece)
    return verifier.finish()


async def _fetch_directory(
    source: BlockSource, cid: ParsedCid, node: PBNode, dest: Path, budget: Budget, depth: int
) -> DagRef:
    if depth > MAX_DEPTH:
        raise LayoutError(cid.text, f"directories nested deeper than {MAX_DEPTH}")
    if len(node.links) > MAX_DIRECTORY_ENTRIES:
        raise LayoutError(cid.text, f"more than {MAX_DIRECTORY_ENTRIES} entries")
    # Counted before anything is fetched: a directory naming one subtree a thousand times
    # is refused at its first block, not after writing its first million files.
    budget.enter(len(node.links))
    entries: list[tuple[str, ParsedCid]] = []
    previous: bytes | None = None
    for link in node.links:
        name = check_name(link.name, f"{cid.text}/{link.name}")
        key = name.encode("utf-8")
        if previous is not None and key <= previous:
            raise MalformedBlock(f"{cid.text}: links not sorted or repeated at {name!r}")
        previous = key
        entries.append((name, cid_from_link(link.cid)))
    dest.mkdir()
    refs: list[DagRef | None] = [None] * len(entries)

    async def fetch_entry(i: int) -> None:
        # Entries come at once (each a network round trip or more), at most
        # ENTRY_FETCHES of this download's at a time; a failure cancels the rest.
        name, child = entries[i]
        into, deeper = dest / name, depth + 1
        async with budget.fetches:
            child_root = await _root(source, child) if child.codec == DAG_PB else None
            if child_root is None or child_root[1].type != TYPE_DIRECTORY:
                refs[i] = await _fetch_any(source, child, child_root, into, budget, deeper)
                return
        # A subdirectory's own entries take slots of their own: it holds none meanwhile.
        refs[i] = await _fetch_any(source, child, child_root, into, budget, deeper)

    try:
        async with trio.open_nursery() as nursery:
            for i in range(len(entries)):
                nursery.start_soon(fetch_entry, i)
    except BaseExceptionGroup as group:
        # The first entry's own error, as a download one entry at a time would raise it.
        errors = [e for e in leaves(group) if not isinstance(e, trio.Cancelled)]
        if not errors:
            raise
        raise errors[0] from None
    children = []
    for (name, _), fetched in zip(entries, refs, strict=True):
        assert fetched is not None  # every task set its ref or raised
        children.append((name, fetched))
    ref = directory_ref(children)
    if ref.cid != cid_binary(cid.codec, cid.digest, 1):
        raise CidMismatch(cid.text, ref.text)
    return ref
