"""Content store over the Kubo RPC API (``/api/v0``), served by Kubo or js-ipfs.

Every request is streamed: uploads are generated from disk while they are sent, and
downloads are hashed and written piece by piece, so no artifact is ever held whole in
memory. Adds always pass the fixed layout parameters, and the CID the daemon reports is
compared with the one computed locally from the same bytes. httpx errors are translated
to :mod:`protocol.ipfs.errors` in :meth:`KuboContentStore._request` only.

Content held by another participant's node moves in one of two ways. By default the
daemon fetches it over bitswap from the peers it is connected to (``peers`` are dialled
when the store opens and again before every resume). A store given ``gateways`` (other
nodes' read-only HTTP gateways) first streams a file's bytes straight from them; nothing
about the gateway is trusted, the bytes go through the same verification as the daemon's
(:mod:`protocol.ipfs.fetch`). A stream that breaks off resumes at the byte it reached,
from the next source (a ``Range`` request, or ``cat`` with an ``offset``), a bounded
number of times, so a transfer survives the serving node's restart. Once a gateway has
served part of a file, its breaking off or refusing connections is taken for a restart:
the rounds that follow ask it again, and the daemon only in the last round.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import trio

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
from protocol.ipfs.peers import MAX_GATEWAYS
from protocol.ipfs.store import DEFAULT_MAX_SIZE
from protocol.ipfs.wide import wide_transport

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
CONNECT_TIMEOUT = "10s"
"""Longest a daemon may spend dialling one peer (a dead host must not stall a store)."""
MAX_RESUMES = 3
"""Rounds over all sources after a file stream broke off, before giving up."""
RESUME_PAUSE_S = 2.0
"""Pause before the first resume round; doubled each round."""

GATEWAY_TIMEOUT_S = 10.0
"""Longest silence from a peer's gateway before the next source is tried."""
GATEWAY_RANGE_BYTES = 256 << 20
"""The longest range asked of a gateway in one request; a file streams as consecutive
ranges of this size."""

log = logging.getLogger(__name__)


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
        peers: Sequence[str] = (),
        gateways: Sequence[str] = (),
        gateway_transport: httpx.AsyncBaseTransport | None = None,
        resumes: int = MAX_RESUMES,
        resume_pause_s: float = RESUME_PAUSE_S,
        gateway_range_bytes: int = GATEWAY_RANGE_BYTES,
    ) -> None:
        if gateway_range_bytes < 1:
            raise ValueError(f"gateway_range_bytes must be at least 1, got {gateway_range_bytes}")
        if len(gateways) > MAX_GATEWAYS:
            raise ValueError(f"at most {MAX_GATEWAYS} gateways, got {len(gateways)}")
        self.api_url = api_url.rstrip("/")
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=f"{self.api_url}/api/v0/",
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport or wide_transport(),
        )
        self.peers = tuple(peers)
        self.gateways = tuple(g.rstrip("/") for g in gateways)
        gateway_timeout = min(timeout, GATEWAY_TIMEOUT_S)
        self._gateway_client = httpx.AsyncClient(
            timeout=httpx.Timeout(gateway_timeout, connect=min(gateway_timeout, 5.0)),
            transport=gateway_transport or wide_transport(),
        )
        self._gateway_range_bytes = gateway_range_bytes
        self._resumes = resumes
        self._resume_pause_s = resume_pause_s
        self.resumed = 0
        """Sources asked to continue a file stream from a byte offset (over the store's life)."""
        self.last_source = ""
        """Where the last file stream that finished came from (a gateway URL or ``api_url``)."""

    async def __aenter__(self) -> KuboContentStore:
        await self.connect_peers()
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
        await self._gateway_client.aclose()

    async def connect_peers(self) -> dict[str, str]:
        """Dial every peer multiaddr; returns the ones that failed, each with its reason
        (also logged: an unreachable peer is not fatal while another source has the content)."""
        failed: dict[str, str] = {}
        for addr in self.peers:
            try:
                params = {"arg": addr, "timeout": CONNECT_TIMEOUT}
                async with self._request("swarm/connect", params) as resp:
                    async for _ in _json_lines(resp, "swarm/connect"):
                        pass
            except (ContentUnavailable, ContentNotFound, DaemonError) as exc:
                failed[addr] = str(exc)
                log.warning("IPFS node %s cannot reach peer %s: %s", self.api_url, addr, exc)
        return failed

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
        try:
            async with self._request("block/get", {"arg": cid}) as resp:
                async for piece in resp.aiter_bytes():
                    out += piece
                    if len(out) > max_size:
                        raise ContentTooLarge(cid, max_size)
        except ContentUnavailable as exc:
            if not (self.peers or self.gateways):
                raise
            peers = ", ".join(self.peers) or "none dialled"
            raise ContentUnavailable(
                self.api_url,
                f"block {cid} not found by the node or its peers ({peers}): {exc.reason}",
            ) from exc
        return bytes(out)

    async def fetch_file(self, cid: Cid) -> AsyncGenerator[bytes, None]:
        """A file's bytes, unverified (``fetch`` checks them): from each peer gateway in
        turn, then the daemon; a stream that breaks off resumes where it stopped."""
        sources = [*self.gateways, self.api_url]
        delivered = 0
        failures: list[str] = []
        # Resuming needs other nodes that may come back; a lone daemon's error is final.
        others = bool(self.peers or self.gateways)
        gateway_served = False
        for round_ in range(self._resumes + 1):
            if round_:
                await trio.sleep(self._resume_pause_s * 2 ** (round_ - 1))
                await self.connect_peers()
            gateway_gone = False
            for source in sources:
                if source == self.api_url and gateway_gone and round_ < self._resumes:
                    # A gateway that was serving this file broke off or cannot be reached:
                    # its node is most likely restarting. The daemon would ask that same
                    # node over bitswap, and a js-ipfs daemon's request does not pick up
                    # again when the node is back; so the gateway gets the next rounds and
                    # the daemon only the last one.
                    log.info("file %s: waiting for the gateway before asking %s", cid, source)
                    continue
                if delivered:
                    self.resumed += 1
                try:
                    async for piece in self._file_from(source, cid, delivered):
                        delivered += len(piece)
                        gateway_served |= source != self.api_url
                        yield piece
                except (ContentUnavailable, ContentNotFound, DaemonError) as exc:
                    if not others:
                        raise  # the daemon was the only source: its own error says it all
                    if source != self.api_url and isinstance(exc, ContentUnavailable):
                        gateway_gone |= gateway_served
                    failures.append(f"{source} at byte {delivered}: {exc}")
                    log.info("file %s: %s failed at byte %d: %s", cid, source, delivered, exc)
                    continue
                self.last_source = source
                return
        asked = ", ".join(sources)
        raise ContentUnavailable(
            self.api_url,
            f"{cid}: no source delivered it (asked {asked}; "
            f"last: {failures[-1] if failures else '-'})",
        )

    async def _file_from(self, source: str, cid: Cid, offset: int) -> AsyncGenerator[bytes, None]:
        if source == self.api_url:
            params = {"arg": cid, "offset": str(offset)} if offset else {"arg": cid}
            async with self._request("cat", params) as resp:
                async for piece in resp.aiter_bytes():
                    yield piece
            return
        # only-if-cached: a Kubo gateway answers 412 rather than search the network.
        # A range is always asked for: js-ipfs's gateway streams a range several times
        # faster than a whole file (which it first sniffs for a content type). Ranges are
        # bounded (``gateway_range_bytes``), one after another: js-ipfs's gateway sends
        # the first byte of a range only after a delay that grows with the range's length
        # (11 s for an open range over 2 GiB), longer than the silence a gateway is allowed.
        url = f"{source}/ipfs/{cid}"
        start = offset
        try:
            while True:
                end = start + self._gateway_range_bytes - 1
                headers = {"Cache-Control": "only-if-cached", "Range": f"bytes={start}-{end}"}
                async with self._gateway_client.stream("GET", url, headers=headers) as resp:
                    served = resp.headers.get("content-range", "")
                    ranged = resp.status_code == 206 and served.startswith(f"bytes {start}-")
                    if resp.status_code == 416 and start == 0:
                        return  # an empty file has no byte 0 (the CID check still applies)
                    if not ranged and not (resp.status_code == 200 and start == 0):
                        raise DaemonError(url, resp.status_code, "gateway did not serve the range")
                    began = start
                    async for piece in resp.aiter_bytes():
                        start += len(piece)
                        yield piece
                if start == began and resp.status_code == 206:  # asking again would loop
                    raise DaemonError(url, resp.status_code, "gateway sent an empty range")
                total = served.rpartition("/")[2]
                if resp.status_code == 200 or (
                    start >= int(total)
                    if total.isdigit()
                    else start - began < self._gateway_range_bytes
                ):
                    return  # the whole file, or its last range
        except httpx.TimeoutException as exc:
            raise ContentUnavailable(source, "gateway went silent") from exc
        except httpx.HTTPError as exc:
            raise ContentUnavailable(source, str(exc) or type(exc).__name__) from exc

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

    async def unpin(self, cid: str) -> None:
        text = parse_cid(cid).text
        try:
            async with self._request("pin/rm", {"arg": text, "recursive": "true"}) as resp:
                async for _ in _json_lines(resp, "pin/rm"):
                    pass
        except (ContentNotFound, DaemonError) as exc:
            if "not pinned" not in str(exc).lower():
                raise

    async def pins(self) -> set[str]:
        """The CIDs pinned recursively on the node (canonical text)."""
        found: set[str] = set()
        async with self._request("pin/ls", {"type": "recursive"}) as resp:
            async for entry in _json_lines(resp, "pin/ls"):
                keys = entry.get("Keys")
                if isinstance(keys, dict):  # Kubo and js-ipfs without streaming
                    found.update(normalize_cid(k) for k in keys)
                elif isinstance(entry.get("Cid"), str):  # js-ipfs streams one per line
                    found.add(normalize_cid(entry["Cid"]))
        return found

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
