"""Content addressing for job inputs and outputs.

``cid``, ``dagpb``, ``unixfs`` and ``local`` compute CIDs in pure Python in the project's
fixed layout (CIDv1, raw leaves, sha2-256, 256 KiB chunks, balanced DAG of at most 174
links, unsharded directories of at most 1,000 entries). ``store`` defines the
:class:`ContentStore` interface; ``kubo`` implements it over the Kubo RPC API and
``memory`` in memory. ``fetch`` verifies every download against its CID.
"""

from protocol.ipfs.cid import normalize_cid, parse_cid, result_digest
from protocol.ipfs.errors import (
    CidMismatch,
    ContentNotFound,
    ContentTooLarge,
    ContentUnavailable,
    DaemonError,
    DestinationExists,
    InvalidCid,
    LayoutError,
    MalformedBlock,
    TooManyEntries,
)
from protocol.ipfs.kubo import KuboContentStore
from protocol.ipfs.local import file_ref, path_ref
from protocol.ipfs.memory import MemoryContentStore
from protocol.ipfs.store import DEFAULT_MAX_SIZE, ContentStore
from protocol.ipfs.unixfs import PROFILE, DagRef, Layout, hash_bytes

__all__ = [
    "DEFAULT_MAX_SIZE",
    "PROFILE",
    "CidMismatch",
    "ContentNotFound",
    "ContentStore",
    "ContentTooLarge",
    "ContentUnavailable",
    "DaemonError",
    "DagRef",
    "DestinationExists",
    "InvalidCid",
    "KuboContentStore",
    "Layout",
    "LayoutError",
    "MalformedBlock",
    "MemoryContentStore",
    "TooManyEntries",
    "file_ref",
    "hash_bytes",
    "normalize_cid",
    "parse_cid",
    "path_ref",
    "result_digest",
]
