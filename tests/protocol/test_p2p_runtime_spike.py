"""One trio run holds a FastAPI app served by Hypercorn and a libp2p host, side by side.

This is the coordinator's runtime: its HTTP API and its libp2p node share one event loop.
"""

from __future__ import annotations

import httpx
import pytest
import trio
from fastapi import FastAPI

from protocol.ids import PeerId
from protocol.p2p.asgi import serve_asgi
from protocol.p2p.host import open_host
from protocol.p2p.rpc_client import request
from protocol.p2p.rpc_server import RequestHandlers
from protocol.p2p.testing import dev_private_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PING = "/gpumarket-test/ping/1.0.0"


def make_app(peer_id: str) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        await trio.sleep(0)  # the handler runs on trio, inside the same run
        return {"status": "ok", "peer_id": peer_id}

    return app


async def test_http_api_and_libp2p_host_in_one_trio_run() -> None:
    async def pong(data: bytes, peer: PeerId) -> bytes:
        return b"pong:" + data

    async with (
        open_host(dev_private_key(0)) as node,
        open_host(dev_private_key(1)) as client,
        serve_asgi(make_app(node.peer_id)) as server,
    ):
        RequestHandlers(node).register(PING, pong)
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"

        def get_health() -> httpx.Response:
            return httpx.get(f"{server.url}/health", timeout=5)

        async def libp2p_round_trip() -> bytes:
            await client.connect(node.addrs[0])
            return await request(client, node.peer_id, PING, b"1")

        results: dict[str, object] = {}

        async def http_part() -> None:
            results["http"] = await trio.to_thread.run_sync(get_health)

        async def p2p_part() -> None:
            results["p2p"] = await libp2p_round_trip()

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(http_part)
                nursery.start_soon(p2p_part)

        response = results["http"]
        assert isinstance(response, httpx.Response) and response.status_code == 200
        assert response.json() == {"status": "ok", "peer_id": node.peer_id}
        assert results["p2p"] == b"pong:1"
        port = server.port

    # Both are down once the block ends: the port refuses connections.
    with pytest.raises(httpx.ConnectError):
        await trio.to_thread.run_sync(lambda: httpx.get(f"http://127.0.0.1:{port}/health"))
