"""Streamed ``multipart/form-data`` bodies for ``/api/v0/add`` that hash what they send.

Files are read piece by piece while the request is being sent, and every piece also goes
through the layout's DAG builder, so after the upload :attr:`UploadBody.expected` holds
the root CID the daemon must report. Directories are sent depth first, each directory as
an ``application/x-directory`` part before its entries, with ``/``-separated paths
percent-encoded in the filename (both Kubo and js-ipfs decode them). Every part carries a
Content-Type because js-ipfs rejects parts without one. js-ipfs also only reads filenames
of two or more characters, hence the fixed names below.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from protocol.ipfs.errors import LayoutError
from protocol.ipfs.local import MAX_DEPTH, READ_SIZE, Entry, list_directory, require
from protocol.ipfs.unixfs import DagRef, FileDagBuilder, directory_ref

FILE_PART_NAME = "data"
DIRECTORY_ROOT_NAME = "content"


@dataclass(frozen=True)
class _Item:
    entry: Entry
    children: list[_Item]


class UploadBody:
    """An async iterable request body; ``expected`` is set once it has been fully sent."""

    def __init__(self) -> None:
        self.boundary = secrets.token_hex(16)
        self.expected: DagRef | None = None

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _header(self, path: str, content_type: str) -> bytes:
        return (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{quote(path, safe="")}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode("ascii")

    def _closing(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode("ascii")

    def __aiter__(self) -> AsyncIterator[bytes]:
        raise NotImplementedError


class BytesBody(UploadBody):
    """One file whose bytes are already in memory."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        builder = FileDagBuilder()
        builder.update(self._data)
        yield self._header(FILE_PART_NAME, "application/octet-stream")
        yield self._data
        yield b"\r\n" + self._closing()
        self.expected = builder.finish()


class FileBody(UploadBody):
    """One file streamed from disk."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        require(path, directory=False)
        self._path = path

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._header(FILE_PART_NAME, "application/octet-stream")
        builder = FileDagBuilder()
        with open(self._path, "rb") as handle:
            while piece := handle.read(READ_SIZE):
                builder.update(piece)
                yield piece
        yield b"\r\n" + self._closing()
        self.expected = builder.finish()


class DirectoryBody(UploadBody):
    """A directory tree under the part name :data:`DIRECTORY_ROOT_NAME`.

    The tree is listed (and refused if the layout cannot hold it) when the body is
    created, before any byte is sent.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        require(path, directory=True)
        self._tree = _scan(path, 0)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        refs: list[DagRef] = []
        async for piece in self._directory(DIRECTORY_ROOT_NAME, self._tree, refs):
            yield piece
        yield self._closing()
        self.expected = refs[0]

    async def _directory(
        self, path: str, tree: list[_Item], out: list[DagRef]
    ) -> AsyncIterator[bytes]:
        yield self._header(path, "application/x-directory") + b"\r\n"
        children: list[tuple[str, DagRef]] = []
        for item in tree:
            entry = item.entry
            child_path = f"{path}/{entry.name}"
            refs: list[DagRef] = []
            if entry.is_dir:
                async for piece in self._directory(child_path, item.children, refs):
                    yield piece
            else:
                yield self._header(child_path, "application/octet-stream")
                builder = FileDagBuilder()
                with open(entry.path, "rb") as handle:
                    while piece := handle.read(READ_SIZE):
                        builder.update(piece)
                        yield piece
                yield b"\r\n"
                refs.append(builder.finish())
            children.append((entry.name, refs[0]))
        out.append(directory_ref(children))


def _scan(path: Path, depth: int) -> list[_Item]:
    if depth > MAX_DEPTH:
        raise LayoutError(str(path), f"directories nested deeper than {MAX_DEPTH}")
    return [
        _Item(entry, _scan(entry.path, depth + 1) if entry.is_dir else [])
        for entry in list_directory(path)
    ]
