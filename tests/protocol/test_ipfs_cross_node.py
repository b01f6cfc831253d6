"""Content moving between two IPFS nodes: a peer's gateway first, bitswap after, resumes.

The integration tests start two real daemons on loopback (B connected to A as a swarm
peer); the unit tests drive the gateway path through ``httpx.MockTransport``.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from devnet.ipfs import IpfsNode, connect_nodes, start_ipfs
from protocol.identity import Identity
from protocol.ids import Cid
from protocol.ipfs import CidMismatch, ContentUnavailable, KuboContentStore, hash_bytes
from protocol.p2p.testing import dev_private_key

CHUNK = 262_144


def noise(size: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(f"cross:{seed}:{size}".encode()).digest(size)


# -- unit: the gateway path through a mock ------------------------------------------------


class _Broken(httpx.AsyncByteStream):
    """Yields ``data`` in pieces, then breaks off as a dying server would."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._data), 65536):
            yield self._data[start : start + 65536]
        raise httpx.RemoteProtocolError("peer closed connection")


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _asked(header: str) -> tuple[int, int]:
    """(first, last) byte of a bounded ``Range: bytes=first-last``."""
    first, _, last = header.removeprefix("bytes=").partition("-")
    assert last, f"an open range was asked: {header}"
    return int(first), int(last)


async def test_a_file_is_asked_of_a_gateway_in_bounded_ranges(tmp_path: Path) -> None:
    data = noise(CHUNK, seed=12)  # one raw block: no root block to ask the daemon for
    cid = hash_bytes(data).text
    window = 100_000
    ranges: list[tuple[int, int]] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        start, end = _asked(request.headers["range"])
        ranges.append((start, end))
        end = min(end, len(data) - 1)
        headers = {"content-range": f"bytes {start}-{end}/{len(data)}"}
        return httpx.Response(206, headers=headers, content=data[start : end + 1])

    async with KuboContentStore(
        _closed_port_url(),
        timeout=2.0,
        gateways=["http://gw.test"],
        gateway_transport=httpx.MockTransport(gateway),
        gateway_range_bytes=window,
    ) as store:
        got = await store.get(cid, tmp_path / "out", max_size=len(data))
    assert got.read_bytes() == data
    assert ranges == [(0, 99_999), (100_000, 199_999), (200_000, 299_999)]
    assert store.last_source == "http://gw.test" and store.resumed == 0


async def test_gateway_stream_resumes_at_the_byte_it_reached(tmp_path: Path) -> None:
    data = noise(CHUNK, seed=10)  # one raw block: no root block to ask the daemon for
    cid = hash_bytes(data).text
    cut = 100_001
    ranges: list[str] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        wanted = request.headers["range"]
        ranges.append(wanted)
        start, end = _asked(wanted)
        headers = {"content-range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        if start == 0:
            return httpx.Response(206, headers=headers, stream=_Broken(data[:cut]))
        return httpx.Response(206, headers=headers, content=data[start : end + 1])

    async with KuboContentStore(
        _closed_port_url(),
        timeout=2.0,
        gateways=["http://gw.test"],
        gateway_transport=httpx.MockTransport(gateway),
        resume_pause_s=0.0,
    ) as store:
        got = await store.get(cid, tmp_path / "out", max_size=len(data))
    assert got.read_bytes() == data
    assert [_asked(r)[0] for r in ranges] == [0, cut]
    assert store.resumed >= 1
    assert store.last_source == "http://gw.test"


async def test_gateway_that_ignores_the_range_is_not_spliced(tmp_path: Path) -> None:
    data = noise(CHUNK, seed=11)
    cid = hash_bytes(data).text
    calls = 0

    def gateway(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(
                206, headers={"content-range": "bytes 0-"}, stream=_Broken(data[:70_000])
            )
        return httpx.Response(200, content=data)  # the whole file again: never appended

    async with KuboContentStore(
        _closed_port_url(),
        timeout=2.0,
        gateways=["http://gw.test"],
        gateway_transport=httpx.MockTransport(gateway),
        resumes=1,
        resume_pause_s=0.0,
    ) as store:
        with pytest.raises(ContentUnavailable, match="no source delivered"):
            await store.get(cid, tmp_path / "out", max_size=len(data))
    assert not (tmp_path / "out").exists()


def _gateway_that_restarts(
    data: bytes, cut: int, down_for: int
) -> tuple[httpx.MockTransport, list[str]]:
    """A gateway that serves ``data[:cut]`` and breaks off, refuses ``down_for`` connections
    (its node restarting), then serves ranges again; it records each range asked."""
    asked: list[str] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers["range"])
        if len(asked) == 1:
            headers = {"content-range": f"bytes 0-{len(data) - 1}/{len(data)}"}
            return httpx.Response(206, headers=headers, stream=_Broken(data[:cut]))
        if len(asked) <= 1 + down_for:
            raise httpx.ConnectError("connection refused", request=request)
        start, end = _asked(request.headers["range"])
        end = min(end, len(data) - 1)
        headers = {"content-range": f"bytes {start}-{end}/{len(data)}"}
        return httpx.Response(206, headers=headers, content=data[start : end + 1])

    return httpx.MockTransport(gateway), asked


def _daemon(data: bytes, asked: list[str]) -> httpx.MockTransport:
    """A daemon whose ``cat`` serves ``data`` from the offset asked (recorded)."""

    def daemon(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v0/cat"
        offset = int(request.url.params.get("offset", "0"))
        asked.append(str(offset))
        return httpx.Response(200, content=data[offset:])

    return httpx.MockTransport(daemon)


async def _fetch_past_a_restart(
    data: bytes, gateway: httpx.MockTransport, daemon_asked: list[str], dest: Path, **options: Any
) -> KuboContentStore:
    """Fetch ``data`` by its CID from a store with one gateway (``gateway``) and a daemon
    that records the offsets asked of it; checks the bytes and returns the store."""
    async with KuboContentStore(
        "http://daemon.test",
        timeout=2.0,
        transport=_daemon(data, daemon_asked),
        gateways=["http://gw.test"],
        gateway_transport=gateway,
        resume_pause_s=0.0,
        **options,
    ) as store:
        got = await store.get(hash_bytes(data).text, dest, max_size=len(data))
    assert got.read_bytes() == data
    return store


async def test_a_gateway_that_went_away_mid_file_is_waited_for_before_the_daemon(
    tmp_path: Path,
) -> None:
    data = noise(CHUNK, seed=13)
    gateway, ranges = _gateway_that_restarts(data, cut=100_001, down_for=2)
    daemon_asked: list[str] = []
    store = await _fetch_past_a_restart(data, gateway, daemon_asked, tmp_path / "out")
    assert [_asked(r)[0] for r in ranges] == [0, 100_001, 100_001, 100_001]
    assert daemon_asked == []  # its node was restarting: the gateway was asked again
    assert store.last_source == "http://gw.test"


async def test_a_gateway_gone_for_good_hands_over_to_the_daemon_in_the_last_round(
    tmp_path: Path,
) -> None:
    data = noise(CHUNK, seed=14)
    gateway, ranges = _gateway_that_restarts(data, cut=70_000, down_for=99)
    daemon_asked: list[str] = []
    store = await _fetch_past_a_restart(data, gateway, daemon_asked, tmp_path / "out", resumes=2)
    assert len(ranges) == 3 and daemon_asked == ["70000"]  # once, from the byte reached
    assert store.last_source == "http://daemon.test"


async def test_tampered_gateway_bytes_are_refused(tmp_path: Path) -> None:
    data = noise(CHUNK, seed=12)
    cid = hash_bytes(data).text
    bad = bytearray(data)
    bad[CHUNK - 3] ^= 1

    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=bytes(bad))

    async with KuboContentStore(
        _closed_port_url(),
        timeout=2.0,
        gateways=["http://gw.test"],
        gateway_transport=httpx.MockTransport(gateway),
    ) as store:
        with pytest.raises(CidMismatch):
            await store.get(cid, tmp_path / "out", max_size=len(data))
    assert list(tmp_path.iterdir()) == []


# -- integration: two real daemons ----------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IpfsNode, IpfsNode]]:
    serving = start_ipfs(tmp_path_factory.mktemp("node-a"))
    fetching = start_ipfs(tmp_path_factory.mktemp("node-b"))
    try:
        connect_nodes(fetching.api_url, [serving.swarm_addr])
        yield serving, fetching
    finally:
        fetching.stop()
        serving.stop()


async def _add_at(node: IpfsNode, data: bytes) -> str:
    async with KuboContentStore(node.api_url, timeout=30) as store:
        return await store.add_bytes(data)


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_file_comes_from_the_peer_gateway(
    pair: tuple[IpfsNode, IpfsNode], tmp_path: Path
) -> None:
    serving, fetching = pair
    data = noise(6 * CHUNK + 3, seed=1)
    cid = await _add_at(serving, data)
    async with KuboContentStore(
        fetching.api_url, timeout=30, peers=[serving.swarm_addr], gateways=[serving.gateway_url]
    ) as store:
        got = await store.get(cid, tmp_path / "out", max_size=len(data))
    assert got.read_bytes() == data
    assert store.last_source == serving.gateway_url


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_unreachable_gateway_falls_back_to_bitswap(
    pair: tuple[IpfsNode, IpfsNode], tmp_path: Path
) -> None:
    serving, fetching = pair
    data = noise(3 * CHUNK + 9, seed=2)
    cid = await _add_at(serving, data)
    async with KuboContentStore(
        fetching.api_url, timeout=30, peers=[serving.swarm_addr], gateways=[_closed_port_url()]
    ) as store:
        got = await store.get(cid, tmp_path / "out", max_size=len(data))
    assert got.read_bytes() == data
    assert store.last_source == fetching.api_url


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_content_nobody_has_names_cid_and_sources(pair: tuple[IpfsNode, IpfsNode]) -> None:
    serving, fetching = pair
    absent = hash_bytes(noise(CHUNK + 1, seed=3)).text
    async with KuboContentStore(
        fetching.api_url, timeout=3, gateways=[serving.gateway_url], resumes=0
    ) as store:
        with pytest.raises(ContentUnavailable) as caught:
            await store.read_bytes(absent)
    message = str(caught.value)
    assert absent in message
    assert fetching.api_url in message


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_transfer_survives_a_restart_of_the_serving_node(
    pair: tuple[IpfsNode, IpfsNode],
) -> None:
    import trio

    serving, fetching = pair
    data = noise(64 * CHUNK, seed=4)  # 16 MiB
    cid = await _add_at(serving, data)
    got = bytearray()
    restarted = False
    async with KuboContentStore(
        fetching.api_url,
        timeout=10,
        peers=[serving.swarm_addr],
        gateways=[serving.gateway_url],
        resume_pause_s=1.0,
    ) as store:
        async for piece in store.cat(cid, max_size=len(data)):
            got += piece
            if not restarted and len(got) >= len(data) // 4:
                restarted = True
                await trio.to_thread.run_sync(serving.restart)
    assert restarted
    assert bytes(got) == data
    assert store.resumed >= 1


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_unreachable_peer_is_reported_not_fatal(pair: tuple[IpfsNode, IpfsNode]) -> None:
    serving, fetching = pair
    peer_id = Identity.from_private_key(dev_private_key(9, "absent-ipfs-peer")).peer_id
    port = _closed_port_url().rsplit(":", 1)[1]
    dead = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}"
    async with KuboContentStore(
        fetching.api_url, timeout=30, peers=[dead, serving.swarm_addr]
    ) as store:
        failed = await store.connect_peers()
        assert list(failed) == [dead]
        data = noise(CHUNK + 1, seed=5)
        cid = await _add_at(serving, data)
        assert await store.read_bytes(cid) == data  # the live peer still serves it


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_gateway_reads_are_wide(pair: tuple[IpfsNode, IpfsNode]) -> None:
    """A gateway stream arrives in reads of more than httpcore's 64 KiB (the per-read cost
    is what limited a verified download): the widened transport is in force."""
    serving, fetching = pair
    data = noise(32 * CHUNK, seed=6)  # 8 MiB
    cid = await _add_at(serving, data)
    async with KuboContentStore(
        fetching.api_url, timeout=30, peers=[serving.swarm_addr], gateways=[serving.gateway_url]
    ) as store:
        sizes = []
        async for piece in store.fetch_file(Cid(cid)):
            sizes.append(len(piece))
            await trio.sleep(0.005)  # a slow consumer: the socket fills between reads
    assert sum(sizes) == len(data)
    assert max(sizes) > 64 << 10
