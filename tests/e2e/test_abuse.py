"""Hostile peers against the live coordinator, in small bounded doses (``bench/abuse.py``
holds the heavy variants): each attack is refused, /health keeps answering, nothing is
written for a stranger, and an honest job still settles afterwards."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator

import httpx
import pytest
import trio

from protocol.errors import GpuMarketError
from protocol.identity import Identity
from protocol.ids import JobId
from protocol.messages import Advert, ErrorReply, LogChunk
from protocol.p2p.errors import RemoteError
from protocol.p2p.gossip import wait_for_topic_peers
from protocol.p2p.host import open_host
from protocol.p2p.rpc_client import KeptStream
from protocol.p2p.rpc_wire import Limits
from protocol.registry import ADVERT_TOPIC, REPORT_PROTOCOL
from protocol.signing import decode_signed, encode_signed, sign_message
from tests.e2e.market import REPO, Market
from tests.e2e.test_adverts import capture_advert

pytestmark = pytest.mark.integration

REPORTS = 200
ADVERT_KEYS = 20
SETTLE_S = 4.0
LIMITS = Limits(max_request_bytes=64 * 1024, max_response_bytes=64 * 1024, timeout_s=10.0)


def url(market: Market) -> str:
    coordinator = market.state.coordinator_url
    assert coordinator is not None
    return coordinator


def health_answers(market: Market) -> bool:
    return httpx.get(url(market) + "/health", timeout=5.0).status_code == 200


def rows_for(market: Market, address: str) -> int:
    """Rows naming ``address`` anywhere the coordinator records a provider."""
    db = market.root / "coordinator" / "coordinator.sqlite"
    queries = (
        "select count(*) from reputations where lower(address) = ?",
        "select count(*) from job_providers where lower(address) = ?",
        "select count(*) from job_logs where lower(provider) = ?",
    )
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return sum(int(conn.execute(q, (address.lower(),)).fetchone()[0]) for q in queries)


def post_jobs(market: Market, content: bytes | Iterator[bytes]) -> int | None:
    """The status of ``POST /jobs``; None when the server closed before the body was sent."""
    try:
        response = httpx.post(
            url(market) + "/jobs",
            content=content,
            headers={"content-type": "application/json"},
            timeout=30.0,
        )
    except httpx.HTTPError:
        return None
    return response.status_code


def test_deep_and_oversized_bodies_are_refused(market: Market) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    small_deep = b"[" * 2000 + b"]" * 2000  # under the byte cap: only the depth check stops it
    for body in (deep, small_deep):
        status = post_jobs(market, body)
        assert status is None or 400 <= status < 500, status

    def big() -> Iterator[bytes]:
        for _ in range(16):
            yield b" " * (1024 * 1024)

    status = post_jobs(market, big())
    assert status is None or 400 <= status < 500, status
    assert health_answers(market)


async def test_reports_from_a_stranger_are_refused(market: Market) -> None:
    stranger = Identity.generate()
    addr = market.state.coordinator_multiaddr
    assert addr is not None
    accepted = 0
    async with open_host(stranger.private_key) as node:
        peer = await node.connect(addr)
        async with KeptStream(node, peer, REPORT_PROTOCOL, LIMITS) as kept:
            with trio.fail_after(60):
                for i in range(REPORTS):
                    body = LogChunk(
                        job_id=JobId(os.urandom(32)),
                        provider=stranger.address,
                        stream="stdout",
                        offset=i,
                        data=b"spam",
                    )
                    try:
                        reply = await kept.request(encode_signed(sign_message(body, stranger)))
                    except (RemoteError, GpuMarketError):
                        continue
                    try:
                        if not isinstance(decode_signed(reply).body, ErrorReply):
                            accepted += 1
                    except GpuMarketError:
                        accepted += 1  # a bare status reply would be an acceptance
    assert accepted == 0, f"{accepted} reports for unknown jobs were accepted"
    assert await trio.to_thread.run_sync(health_answers, market)
    assert rows_for(market, stranger.address) == 0


async def test_adverts_from_unstaked_keys_never_reach_the_book(market: Market) -> None:
    addr = market.state.coordinator_multiaddr
    assert addr is not None
    async with open_host(Identity.generate().private_key) as watcher:
        await watcher.connect(addr)
        template = await capture_advert(watcher)
    strangers = [Identity.generate() for _ in range(ADVERT_KEYS)]
    limiter = trio.CapacityLimiter(5)

    async def advertise(me: Identity) -> None:
        async with limiter, open_host(me.private_key) as node:
            await node.connect(addr)
            await wait_for_topic_peers(node, ADVERT_TOPIC, 1, timeout=10)
            body: Advert = template.model_copy(
                update={
                    "provider": me.address,
                    "peer_id": node.peer_id,
                    "multiaddrs": tuple(node.addrs),
                    "seq": 1,
                    "expires_at": int(time.time()) + 120,
                }
            )
            await node.pubsub.publish(ADVERT_TOPIC, encode_signed(sign_message(body, me)))
            await trio.sleep(1.0)

    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            for me in strangers:
                nursery.start_soon(advertise, me)
    await trio.sleep(SETTLE_S)
    listed = {p["address"] for p in await trio.to_thread.run_sync(market.providers)}
    assert not listed & {s.address for s in strangers}, "an unstaked key reached the book"
    assert all(rows_for(market, s.address) == 0 for s in strangers)


def test_an_honest_job_settles_after_the_abuse(market: Market) -> None:
    assert health_answers(market)
    job = market.submit(REPO / "examples" / "matmul" / "job.yaml", market.new_requester())["job"]
    assert job["state"] == "settled", job
