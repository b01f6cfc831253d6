"""Content store over the Kubo RPC API (``/api/v0``), served by Kubo or js-ipfs.

Every request is streamed: uploads are generated from disk while they are sent, and
downloads are hashed and written piece by piece, so no artifact is ever held whole in
memory. Adds always pass the fixed layout parameters, and the CID the daemon reports is
compared with the one computed locally from the same bytes. httpx errors are translated
to :mod:`protocol.ipfs.errors` in :meth:`KuboContentStore._request` only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from protocol.ids import Cid
from protocol.ipfs import fetch
from protocol.ipfs.cid import normalize_cid, parse_cid
from protocol.ipfs.errors import (
    CidMismatch,
    ContentNotFound,
    ContentTooLarge,
    ContentUnavailable,
    DaemonError,
)
from protocol.ipfs.multipart import (
    DIRECTORY_ROOT_NAME,
    FILE_PART_NAME,
    BytesBody,
    DirectoryBody,
    FileBody,
    UploadBody,
)
from protocol.ipfs.store import DEFAULT_MAX_SIZE

ADD_PARAMS: Mapping[str, str] = {
    "cid-version": "1",
    "raw-leaves": "true",
    "hash": "sha2-256",
    "chunker": "size-262144",
    "trickle": "false",
    "wrap-with-directory": "false",
    "progress": "false",
    "cid-base": "base32",
}
"""The fixed layout, spelled as add options. Sharding is never requested."""

MAX_REPLY_LINE = 1 << 20
MAX_ERROR_BODY = 64 << 10
HAS_TIMEOUT = "1s"


class KuboContentStore:
    """A :class:`~protocol.ipfs.store.ContentStore` backed by an IPFS daemon's RPC API.

    Use as ``async with KuboContentStore(api_url) as store``. ``timeout`` bounds each wait
    for the daemon (connecting, or silence while reading or writing), not a whole transfer;
    content the daemon cannot find is reported as ContentUnavailable once it stays silent
    that long. Local files are read and hashed on the calling thread in 1 MiB pieces.
    """

    def __init__(
        self,
        api_url: str,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=f"{self.api_url}/api/v0/",
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    async def __aenter__(self) -> KuboContentStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- adding --------------------------------------------------------------------

    async def add_bytes(self, data: bytes, *, pin: bool = True) -> Cid:
        return await self._add(BytesBody(data), FILE_PART_NAME, pin)

    async def add_file(self, path: Path, *, pin: bool = True) -> Cid:
        return await self._add(FileBody(path), FILE_PART_NAME, pin)

    async def add_directory(self, path: Path, *, pin: bool = True) -> Cid:
        return await self._add(DirectoryBody(path), DIRECTORY_ROOT_NAME, pin)

    async def _add(self, body: UploadBody, name: str, pin: bool) -> Cid:
        params = {**ADD_PARAMS, "pin": "true" if pin else "false"}
        headers = {"Content-Type": body.content_type}
        reported: str | None = None
        async with self._request("add", params, content=body, headers=headers) as resp:
            async for entry in _json_lines(resp, "add"):
                if entry.get("Name") == name and isinstance(entry.get("Hash"), str):
                    reported = entry["Hash"]
        if reported is None or body.expected is None:
            raise DaemonError("add", None, f"no CID reported for {name!r}")
        got = normalize_cid(reported)
        expected = body.expected.text
        if got != expected:
            # The daemon ignored a layout option: publishing its CID would break
            # every later verification, so refuse it.
            raise CidMismatch(expected, got)
        return expected

    # -- fetching (verified in protocol.ipfs.fetch) -----------------------------------

    async def fetch_block(self, cid: Cid, *, max_size: int) -> bytes:
        """Raw bytes of one block, unverified (``fetch`` checks them)."""
        out = bytearray()
        async with self._request("block/get", {"arg": cid}) as resp:
            async for piece in resp.aiter_bytes():
                out += piece
                if len(out) > max_size:
                    raise ContentTooLarge(cid, max_size)
        return bytes(out)

    async def fetch_file(self, cid: Cid) -> AsyncGenerator[bytes, None]:
        """A file's bytes as the daemon sends them, unverified (``fetch`` checks them)."""
        async with self._request("cat", {"arg": cid}) as resp:
            async for piece in resp.aiter_bytes():
                yield piece

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

    # -- node state -----------------------------------------------------------------

    async def pin(self, cid: str) -> None:
        text = parse_cid(cid).text
        async with self._request("pin/add", {"arg": text, "recursive": "true"}) as resp:
            async for _ in _json_lines(resp, "pin/add"):
                pass

    async def has(self, cid: str) -> bool:
        """Kubo answers from its blockstore (``offline``); js-ipfs has no offline switch
        and is asked with a short timeout instead, which it reports as an error."""
        text = parse_cid(cid).text
        params = {"arg": text, "offline": "true", "timeout": HAS_TIMEOUT}
        try:
            async with self._request("block/stat", params) as resp:
                async for _ in _json_lines(resp, "block/stat"):
                    pass
        except (ContentNotFound, DaemonError):
            return False
        return True

    async def version(self) -> dict[str, Any]:
        return await self._json("version")

    async def node_id(self) -> dict[str, Any]:
        return await self._json("id")

    async def _json(self, endpoint: str) -> dict[str, Any]:
        async with (
            self._request(endpoint, {}) as resp,
            aclosing(_json_lines(resp, endpoint)) as entries,
        ):
            async for entry in entries:
                return entry
        raise DaemonError(endpoint, None, "empty reply")

    # -- the one place where httpx errors become content errors ----------------------

    @asynccontextmanager
    async def _request(
        self,
        endpoint: str,
        params: Mapping[str, str],
        *,
        content: UploadBody | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        try:
            async with self._client.stream(
                "POST", endpoint, params=params, content=content, headers=headers
            ) as resp:
                if resp.status_code != 200:
                    raise await _error_reply(endpoint, params, resp)
                yield resp
        except httpx.TimeoutException as exc:
            raise ContentUnavailable(
                self.api_url, f"/api/v0/{endpoint} got no answer within {self._timeout:g}s"
            ) from exc
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise ContentUnavailable(self.api_url, f"/api/v0/{endpoint}: {reason}") from exc
        except httpx.HTTPError as exc:
            raise DaemonError(endpoint, None, str(exc) or type(exc).__name__) from exc


async def _error_reply(
    endpoint: str, params: Mapping[str, str], resp: httpx.Response
) -> DaemonError | ContentNotFound:
    body = bytearray()
    async for piece in resp.aiter_bytes():
        body += piece
        if len(body) > MAX_ERROR_BODY:
            break
    text = bytes(body[:MAX_ERROR_BODY]).decode("utf-8", "replace")
    try:
        message = str(json.loads(text).get("Message", text))
    except (ValueError, AttributeError):
        message = text.strip()
    lowered = message.lower()
    if "arg" in params and ("not found" in lowered or "could not find" in lowered):
        return ContentNotFound(params["arg"])
    return DaemonError(endpoint, resp.status_code, message[:500])


async def _json_lines(resp: httpx.Response, endpoint: str) -> AsyncGenerator[dict[str, Any]]:
    """Newline-delimited JSON objects of a reply; an error object becomes DaemonError."""
    buffer = bytearray()
    async for piece in resp.aiter_bytes():
        buffer += piece
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                yield _parse_line(line, endpoint)
        if len(buffer) > MAX_REPLY_LINE:
            raise DaemonError(endpoint, None, "reply line too long")
    if buffer.strip():
        yield _parse_line(bytes(buffer), endpoint)


def _parse_line(line: bytes, endpoint: str) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise DaemonError(endpoint, None, f"not JSON: {line[:200]!r}") from exc
    if not isinstance(entry, dict):
        raise DaemonError(endpoint, None, f"not a JSON object: {line[:200]!r}")
    if entry.get("Type") == "error" or ("Message" in entry and "Hash" not in entry):
        raise DaemonError(endpoint, None, str(entry.get("Message", entry))[:500])
    return entry
