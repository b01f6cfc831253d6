"""CIDs of local files and directories, computed in pure Python in the fixed layout.

This is what lets a provider commit to its result CID before publishing anything. Files
are read chunk by chunk, so memory stays flat whatever their size. Directories are
refused where the layout cannot represent them the same way on every node: more than
:data:`MAX_DIRECTORY_ENTRIES` entries (daemons would start sharding), names longer than
:data:`MAX_NAME_BYTES` (Kubo's size estimate would shard a full directory), symbolic links,
special files, and names that are not valid UTF-8 path components.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from protocol.ipfs.errors import LayoutError
from protocol.ipfs.unixfs import PROFILE, BlockSink, DagRef, FileDagBuilder, Layout, directory_ref

MAX_DIRECTORY_ENTRIES = 1000
MAX_NAME_BYTES = 200
MAX_DEPTH = 32
READ_SIZE = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One directory entry: its validated name, where it lives, and whether it is a directory."""

    name: str
    path: Path
    is_dir: bool


def check_name(name: str, where: str) -> str:
    """Return ``name`` if it is a valid single path component in the layout."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LayoutError(where, "name is not valid UTF-8") from exc
    if name in ("", ".", "..") or "/" in name or "\x00" in name:
        raise LayoutError(where, f"invalid entry name {name!r}")
    if len(encoded) > MAX_NAME_BYTES:
        raise LayoutError(where, f"entry name longer than {MAX_NAME_BYTES} bytes")
    return name


def list_directory(path: Path) -> list[Entry]:
    """Entries of ``path`` in link order (by UTF-8 name bytes), validated for the layout."""
    entries: list[Entry] = []
    with os.scandir(path) as scan:
        for item in scan:
            where = os.path.join(path, item.name)
            name = check_name(item.name, where)
            mode = item.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                entries.append(Entry(name, Path(item.path), True))
            elif stat.S_ISREG(mode):
                entries.append(Entry(name, Path(item.path), False))
            elif stat.S_ISLNK(mode):
                raise LayoutError(where, "symbolic links are not stored")
            else:
                raise LayoutError(where, "only regular files and directories are stored")
            if len(entries) > MAX_DIRECTORY_ENTRIES:
                raise LayoutError(
                    str(path), f"more than {MAX_DIRECTORY_ENTRIES} entries in one directory"
                )
    entries.sort(key=lambda entry: entry.name.encode("utf-8"))
    return entries


def require(path: Path, *, directory: bool) -> None:
    """Refuse ``path`` unless it is a regular file (or a directory), not a symbolic link."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        raise LayoutError(str(path), exc.strerror or "cannot be read") from exc
    if directory and not stat.S_ISDIR(mode):
        raise LayoutError(str(path), "not a directory")
    if not directory and not stat.S_ISREG(mode):
        raise LayoutError(str(path), "not a regular file")


def file_ref(path: Path, layout: Layout = PROFILE, sink: BlockSink | None = None) -> DagRef:
    """Hash one regular file."""
    builder = FileDagBuilder(layout=layout, sink=sink)
    with open(path, "rb") as handle:
        while piece := handle.read(READ_SIZE):
            builder.update(piece)
    return builder.finish()


def directory_ref_of(
    path: Path,
    layout: Layout = PROFILE,
    sink: BlockSink | None = None,
    _depth: int = 0,
) -> DagRef:
    """Hash a directory tree; the root is the directory node itself (no wrapper)."""
    if _depth == 0:
        require(path, directory=True)
    if _depth > MAX_DEPTH:
        raise LayoutError(str(path), f"directories nested deeper than {MAX_DEPTH}")
    children: list[tuple[str, DagRef]] = []
    for entry in list_directory(path):
        if entry.is_dir:
            ref = directory_ref_of(entry.path, layout, sink, _depth + 1)
        else:
            ref = file_ref(entry.path, layout, sink)
        children.append((entry.name, ref))
    return directory_ref(children, layout, sink)


def path_ref(path: Path, layout: Layout = PROFILE, sink: BlockSink | None = None) -> DagRef:
    """Hash a file or a directory, refusing anything else (and symbolic links)."""
    if os.path.isdir(path) and not os.path.islink(path):
        return directory_ref_of(path, layout, sink)
    require(path, directory=False)
    return file_ref(path, layout, sink)
