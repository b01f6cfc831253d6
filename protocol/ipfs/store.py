"""The content store interface every component uses for job inputs and outputs.

Two implementations share it: :class:`protocol.ipfs.kubo.KuboContentStore` (any node
serving the Kubo RPC API) and :class:`protocol.ipfs.memory.MemoryContentStore` (an
in-memory fake for unit tests). Both compute CIDs in the fixed layout and both verify
everything they hand back against the CID that was asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from protocol.ids import Cid
from protocol.ipfs.fetch import MAX_ENTRIES

DEFAULT_MAX_SIZE = 1 << 30
"""Default download cap (1 GiB), the largest ``max_output`` a job spec may ask for."""


class ContentStore(Protocol):
    """Add and fetch content by CID. Every fetch is verified and size-capped.

    Adds return the canonical base32 CIDv1 text. ``max_size`` caps the content bytes of a
    fetch (all files of a directory together); going past it raises
    :class:`~protocol.ipfs.errors.ContentTooLarge`, content that does not hash to the
    CID raises :class:`~protocol.ipfs.errors.CidMismatch`, and nothing partial is left.
    """

    async def add_bytes(self, data: bytes, *, pin: bool = True) -> Cid:
        """Store ``data`` as a file."""
        ...

    async def add_file(self, path: Path, *, pin: bool = True) -> Cid:
        """Store a regular file, streamed from disk."""
        ...

    async def add_directory(self, path: Path, *, pin: bool = True) -> Cid:
        """Store a directory tree; the CID is that of the directory node itself."""
        ...

    def cat(self, cid: str, *, max_size: int = DEFAULT_MAX_SIZE) -> AsyncIterator[bytes]:
        """Stream a file's bytes. The CID is checked when the stream ends, so a consumer
        must treat what it received as unverified until iteration finishes cleanly."""
        ...

    async def read_bytes(self, cid: str, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
        """Fetch a (small) file into memory, verified."""
        ...

    async def get(
        self,
        cid: str,
        dest: Path,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        max_entries: int = MAX_ENTRIES,
    ) -> Path:
        """Fetch a file or directory to ``dest`` (which must not exist), verified, writing at
        most ``max_size`` content bytes and ``max_entries`` files and directories."""
        ...

    async def pin(self, cid: str) -> None:
        """Keep ``cid`` and everything under it from garbage collection."""
        ...

    async def unpin(self, cid: str) -> None:
        """Let ``cid`` be garbage-collected again (nothing happens if it was not pinned)."""
        ...

    async def has(self, cid: str) -> bool:
        """Whether the root block of ``cid`` is held locally (never fetched)."""
        ...

    async def size(self, cid: str) -> int:
        """Content bytes of a file; for a directory, the cumulative size of its DAG."""
        ...
