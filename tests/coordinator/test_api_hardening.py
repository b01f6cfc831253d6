"""Hostile HTTP bodies: the API refuses them cheaply and keeps answering (issue 22, item 1).

In process (httpx's ASGI transport pulls the request body from the test's generator only as
the app asks for it, so the tests see how much of a body the app read) and over loopback
against Hypercorn (a raw socket, so nothing is buffered client-side).
"""

from __future__ import annotations

import resource
import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
import trio
from fastapi import Depends, FastAPI

from coordinator.api import create_app
from coordinator.api.bodies import SUBMIT_JOB_MAX_BYTES, SubmitJob, json_body
from coordinator.api.errors import install
from coordinator.store import AsyncStore, Store
from protocol.encoding import restore_recursion_limit
from protocol.p2p.asgi import serve_asgi
from tests.coordinator.factories import job_record
from tests.coordinator.test_api import KNOWN, Backend

HUGE = 200 * 1024 * 1024
CHUNK = 64 * 1024
RSS_BOUND = 64 * 1024 * 1024
DEEP = b'{"job_id":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _rss() -> int:
    """This process's resident set now, in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


class Pulled:
    """A 200 MB body made on demand, counting what the app pulled of it."""

    def __init__(self, total: int = HUGE) -> None:
        self.total = total
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += CHUNK
            yield b" " * CHUNK


@pytest.fixture
async def api(tmp_path: Path):
    store = AsyncStore(Store(f"sqlite:///{tmp_path / 'api.sqlite'}"))
    await store.add_job(job_record(1))
    transport = httpx.ASGITransport(app=create_app(Backend(store)))
    async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as client:
        yield client
    store.sync.close()


async def _healthy(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["ok"] is True


async def test_json_nested_100000_deep_is_refused_and_the_api_keeps_answering(api) -> None:
    r = await api.post("/jobs", content=DEEP, headers={"content-type": "application/json"})
    assert r.status_code == 413 and str(SUBMIT_JOB_MAX_BYTES) in r.json()["detail"]
    # Under the cap, depth is what the decoder refuses (FastAPI's parser would take it).
    nested = b'{"job_id":' + b"[" * 1000 + b"]" * 1000 + b"}"
    r = await api.post("/jobs", content=nested, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "deeper than 32" in r.json()["detail"], r.text
    await _healthy(api)


async def test_the_decoder_refuses_100000_levels_even_under_a_large_cap() -> None:
    restore_recursion_limit()  # as every gpumarket process does at start-up
    app = FastAPI()
    install(app)

    @app.post("/echo")
    async def echo(body: Annotated[SubmitJob, Depends(json_body(SubmitJob, 2**20))]) -> SubmitJob:
        return body

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.post("/echo", content=DEEP)
        assert r.status_code == 400 and "deeper than 32" in r.json()["detail"], r.text
        r = await client.post("/echo", json={"job_id": KNOWN})
        assert r.status_code == 200 and r.json() == {"job_id": KNOWN}


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_200_mb_body_is_refused_with_413_without_being_read(api, declared: bool) -> None:
    body = Pulled()
    headers = {"content-type": "application/json"}
    if declared:
        headers["content-length"] = str(HUGE)
    before = _rss()
    r = await api.post("/jobs", content=body, headers=headers)
    grown = _rss() - before
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "BodyTooLarge" and str(SUBMIT_JOB_MAX_BYTES) in r.json()["detail"]
    # A declared length is refused before reading a byte; a chunked body at the cap.
    assert body.sent <= (0 if declared else SUBMIT_JOB_MAX_BYTES + CHUNK), body.sent
    assert grown < RSS_BOUND, f"RSS grew by {grown / 2**20:.0f} MiB"
    await _healthy(api)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b'{"job_id":"%s","job_id":"0x"}' % KNOWN.encode(), 400, "duplicate key 'job_id'"),
        (b'["%s"]' % KNOWN.encode(), 400, "must be a JSON object"),
        (b'"%s"' % KNOWN.encode(), 400, "must be a JSON object"),
        (b'{"job_id": ', 400, "malformed JSON"),
        (b'{"job_id": NaN}', 400, "NaN is not allowed"),
        (b"\xff\xfe", 400, "not UTF-8"),
        (b"", 400, "malformed JSON"),
        (b'{"job_id": "nope"}', 422, "body.job_id: String should match pattern"),
        (b"{}", 422, "body.job_id: Field required"),
    ],
    ids=["duplicate", "array", "string", "truncated", "nan", "utf8", "empty", "pattern", "missing"],
)
async def test_bodies_that_are_not_one_valid_object_are_refused_naming_why(
    api, body: bytes, status: int, detail: str
) -> None:
    r = await api.post("/jobs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and detail in r.json()["detail"], r.text
    assert set(r.json()) == {"error", "detail"}


async def test_valid_bodies_are_answered_as_before_and_other_media_types_refused(api) -> None:
    r = await api.post("/jobs", json={"job_id": KNOWN})
    assert r.status_code == 202 and r.json() == {"job_id": KNOWN, "state": "created"}
    r = await api.post("/jobs", content=b'{"job_id":"%s"}' % KNOWN.encode())  # no content-type
    assert r.status_code == 202
    r = await api.post(
        "/jobs", content=b'{"job_id":"%s"}' % KNOWN.encode(), headers={"content-type": "text/plain"}
    )
    assert r.status_code == 415 and "application/json" in r.json()["detail"]
    r = await api.post(
        "/jobs",
        content=b'{"job_id":"%s"}' % KNOWN.encode(),
        headers={"content-type": "application/json", "content-length": "12abc"},
    )
    assert r.status_code == 400 and "Content-Length" in r.json()["detail"]
    spec = (await api.get("/openapi.json")).json()["paths"]["/jobs"]["post"]
    assert spec["requestBody"]["content"]["application/json"]["schema"]["required"] == ["job_id"]
    assert {"413", "415"} <= set(spec["responses"])


# Over loopback: Hypercorn in a thread (the backend is trio code), raw sockets as clients.


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    db = tmp_path_factory.mktemp("hardening") / "api.sqlite"
    ready: list[tuple[str, int]] = []
    stop = threading.Event()

    async def serve() -> None:
        store = AsyncStore(Store(f"sqlite:///{db}"))
        await store.add_job(job_record(1))
        async with serve_asgi(create_app(Backend(store))) as server:
            ready.append((server.host, server.port))
            while not stop.is_set():
                await trio.sleep(0.05)
        store.sync.close()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not ready and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready, "the API did not start"
    try:
        yield ready[0]
    finally:
        stop.set()
        thread.join(timeout=10)


def _response(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    return data


def _send_until_answered(sock: socket.socket, chunk: bytes, limit: int) -> int:
    """Send ``chunk`` repeatedly until the server answers or closes; return bytes sent."""
    sent = 0
    sock.setblocking(False)
    while sent < limit:
        readable, writable, _ = select.select([sock], [sock], [], 10)
        if readable:
            break
        if not writable:
            raise AssertionError("the server neither read nor answered for 10 s")
        try:
            sent += sock.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
    sock.setblocking(True)
    return sent


def _health(address: tuple[str, int]) -> None:
    r = httpx.get(f"http://{address[0]}:{address[1]}/health", timeout=10)
    assert r.status_code == 200 and r.json()["ok"] is True


def _head(address: tuple[str, int], extra: str) -> bytes:
    return (
        f"POST /jobs HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_hypercorn_refuses_a_deep_body_and_keeps_answering(live_api) -> None:
    r = httpx.post(
        f"http://{live_api[0]}:{live_api[1]}/jobs",
        content=DEEP,
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 413
    _health(live_api)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_hypercorn_refuses_200_mb_before_reading_it(live_api, declared: bool) -> None:
    before = _rss()
    with socket.create_connection(live_api, timeout=10) as sock:
        if declared:
            sock.sendall(_head(live_api, f"Content-Length: {HUGE}\r\n"))
            chunk = b" " * CHUNK
        else:
            sock.sendall(_head(live_api, "Transfer-Encoding: chunked\r\n"))
            chunk = b"%x\r\n%s\r\n" % (CHUNK, b" " * CHUNK)
        sent = _send_until_answered(sock, chunk, HUGE)
        answer = _response(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 32 * 1024 * 1024, f"the client got {sent} bytes in before the refusal"
    assert _rss() - before < RSS_BOUND
    _health(live_api)
