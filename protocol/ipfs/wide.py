"""An httpx transport whose socket reads take up to 1 MiB at a time.

httpcore reads a response 64 KiB at a time, and each read costs the same fixed work in
httpcore, h11 and trio however few bytes it brings. Streaming a large file from a gateway
on a busy machine, that per-read cost, not hashing (sha2-256 runs at over 1 GB/s), was
what held a verified download back: the same stream read in pieces of up to 1 MiB moved
about 1.5x as many bytes a second (``bench/content.py``). The reads are widened through
httpcore's public network-backend interface; a read still returns whatever the socket
holds, so small replies are unaffected.
"""

from __future__ import annotations

import logging
import ssl
import typing

import httpcore
import httpx

from protocol.tls import client_tls

log = logging.getLogger(__name__)

READ_BYTES = 1 << 20
"""The most bytes one socket read may return."""


class _WideStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, READ_BYTES), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _WideStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _WideBackend(httpcore.AsyncNetworkBackend):
    """trio's backend (the project runs on trio only), with widened reads."""

    def __init__(self) -> None:
        self._inner = httpcore.TrioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _WideStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _WideStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def wide_transport() -> httpx.AsyncBaseTransport:
    """httpx's own transport (its request mapping, limits and error translation unchanged)
    with widened reads. httpx takes no network backend, so its fresh pool's is replaced
    before any connection exists; where httpx keeps no such pool, reads stay as they are."""
    transport = httpx.AsyncHTTPTransport(verify=client_tls())
    pool = getattr(transport, "_pool", None)
    if isinstance(pool, httpcore.AsyncConnectionPool) and hasattr(pool, "_network_backend"):
        pool._network_backend = _WideBackend()
    else:
        log.debug("httpx keeps no httpcore pool here: reads stay at httpcore's size")
    return transport
