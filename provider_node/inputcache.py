"""Job inputs kept by CID on the provider, so a base model or a dataset that many jobs use
is downloaded once and verified on every use.

An entry is ``<root>/<cid>/content``: the input exactly as a job sees it (a directory, or
one file), made read-only. It is kept only when hashing it the way the project adds
content gives back its CID (content added with another chunker is simply not cached), and
it is hashed again before every use: an entry that no longer matches (a disk error, or a
job run without a sandbox that changed it) is deleted and the input fetched afresh. Jobs
get hard links to the entry (a copy where the file system refuses links), so the cache
costs no second copy on disk.

The total size is bounded (``PROVIDER_INPUT_CACHE_BYTES``); the least recently used
entries go first. Entries are written under a temporary name and renamed into place, so
a crash leaves either a whole entry or a temporary one that the next start removes.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from protocol.errors import GpuMarketError
from protocol.files import remove_tree
from protocol.ids import Cid
from protocol.ipfs.local import path_ref

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
CONTENT = "content"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _hashes_to(path: Path, cid: Cid) -> bool:
    try:
        return path_ref(path).text == cid
    except (GpuMarketError, OSError):
        return False


def _link_tree(source: Path, target: Path) -> None:
    """``target`` as a tree of hard links to ``source`` (copies where links fail)."""
    if source.is_file():
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        return
    target.mkdir()
    for entry in sorted(source.iterdir()):
        _link_tree(entry, target / entry.name)


def _read_only(path: Path) -> None:
    for root, dirs, files in os.walk(path):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o555)
    os.chmod(path, 0o555 if path.is_dir() else 0o444)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    rejected: int = 0
    """Entries deleted because they no longer hashed to their CID."""


class InputCache:
    """See the module docstring. ``max_bytes`` of 0 keeps nothing."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._locks: dict[str, trio.Lock] = {}
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(f"{TEMP_PREFIX}*"):
            remove_tree(leftover)

    def _entry(self, cid: Cid) -> Path:
        return self.root / cid

    def _lock(self, cid: Cid) -> trio.Lock:
        return self._locks.setdefault(cid, trio.Lock())

    def entries(self) -> list[Path]:
        return [p for p in self.root.iterdir() if not p.name.startswith(TEMP_PREFIX)]

    def used_bytes(self) -> int:
        return sum(_size(p) for p in self.entries())

    async def take(self, cid: Cid, target: Path) -> bool:
        """Place the cached input ``cid`` at ``target`` (which must not exist) after
        hashing it again; False when it is not cached (or no longer matched)."""
        async with self._lock(cid):
            entry = self._entry(cid)
            content = entry / CONTENT
            if not content.exists():
                self.stats.misses += 1
                return False
            if not await trio.to_thread.run_sync(_hashes_to, content, cid):
                log.warning("cached input %s no longer matches its CID: fetching it again", cid)
                self.stats.rejected += 1
                await trio.to_thread.run_sync(remove_tree, entry)
                self.stats.misses += 1
                return False
            await trio.to_thread.run_sync(_link_tree, content, target)
            os.utime(entry)  # the least recently used go first
            self.stats.hits += 1
            return True

    async def keep(self, cid: Cid, fetched: Path) -> None:
        """Add ``fetched`` (just downloaded and verified as ``cid``) when it fits and
        hashes back to its CID here; evicts the least recently used entries for room."""
        if self.max_bytes <= 0:
            return
        async with self._lock(cid):
            if self._entry(cid).exists():
                return
            size = await trio.to_thread.run_sync(_size, fetched)
            if size > self.max_bytes:
                return
            if not await trio.to_thread.run_sync(_hashes_to, fetched, cid):
                return  # added with another layout: it could not be verified on use
            await trio.to_thread.run_sync(self._make_room, size)
            temp = self.root / f"{TEMP_PREFIX}{cid}-{time.monotonic_ns()}"
            temp.mkdir()
            try:
                await trio.to_thread.run_sync(_link_tree, fetched, temp / CONTENT)
                await trio.to_thread.run_sync(_read_only, temp / CONTENT)
                temp.rename(self._entry(cid))
            except OSError as exc:
                log.warning("input %s not cached: %s", cid, exc)
                await trio.to_thread.run_sync(remove_tree, temp)

    def _make_room(self, size: int) -> None:
        entries = sorted(self.entries(), key=lambda p: p.stat().st_mtime)
        used = sum(_size(p) for p in entries)
        while entries and used + size > self.max_bytes:
            oldest = entries.pop(0)
            used -= _size(oldest)
            remove_tree(oldest)
