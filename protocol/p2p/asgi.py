"""Serving an ASGI app (FastAPI) with Hypercorn inside the caller's trio run.

The coordinator runs its HTTP API and its libp2p host in one trio program, so the API
must not own the event loop. ``serve_asgi`` starts Hypercorn's trio worker in a nursery,
returns once the socket is bound (with the real port when asked for port 0), and shuts
the server down gracefully when the block ends::

    async with serve_asgi(app) as server, open_host(key) as node:
        print(server.url, node.addrs)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from protocol.errors import TransportError


@dataclass(frozen=True)
class AsgiServer:
    """A running server: its base URL (``http://127.0.0.1:PORT``) and port."""

    url: str
    host: str
    port: int


def _split_bind(bind: str) -> tuple[str, int]:
    address = bind.split("://", 1)[-1]
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


@asynccontextmanager
async def serve_asgi(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    graceful_timeout_s: float = 3.0,
    access_log: bool = False,
) -> AsyncIterator[AsgiServer]:
    """Serve ``app`` on ``host:port`` until the block ends (port 0 picks a free port)."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.graceful_timeout = graceful_timeout_s
    config.accesslog = "-" if access_log else None
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        try:
            binds: list[str] = await nursery.start(
                partial(serve, app, config, shutdown_trigger=shutdown.wait)
            )
        except OSError as exc:
            raise TransportError(f"cannot serve HTTP on {host}:{port}: {exc}") from exc
        if not binds:
            raise TransportError(f"HTTP server on {host}:{port} reported no bound address")
        bound_host, bound_port = _split_bind(binds[0])
        try:
            yield AsgiServer(url=binds[0], host=bound_host, port=bound_port)
        finally:
            shutdown.set()
