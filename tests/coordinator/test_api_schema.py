"""Schemathesis against the live API's OpenAPI spec: no request it generates gets a 5xx.

The app is served by hypercorn on trio in a background thread (the backend's store and
signals are trio code), over a real SQLite store holding one job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, given, settings

from coordinator.api import create_app
from coordinator.store import AsyncStore, Store
from protocol.p2p.asgi import serve_asgi
from tests.coordinator.factories import job_record
from tests.coordinator.test_api import Backend


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("schema") / "api.sqlite"
    ready: list[str] = []
    stop = threading.Event()

    async def serve() -> None:
        store = AsyncStore(Store(f"sqlite:///{db}"))
        await store.add_job(job_record(1))
        async with serve_asgi(create_app(Backend(store))) as server:
            ready.append(server.url)
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


@pytest.fixture(scope="module")
def api_schema(live_api: str):
    return schemathesis.openapi.from_url(f"{live_api}/openapi.json")


def test_no_server_errors(api_schema) -> None:
    checked = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()

        # Streams of a known job stay open until it ends; generated ids are random, so
        # every event-stream request here answers at once (404 or 400).
        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            response = case.call(timeout=10)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
            )

        check()
        checked += 1
    assert checked >= 8


def test_paths_of_the_contract_are_documented(api_schema) -> None:
    paths = set(api_schema.raw_schema["paths"])
    assert {
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/events",
        "/jobs/{job_id}/logs",
        "/jobs/{job_id}/explain",
        "/providers",
        "/health",
        "/metrics",
    } <= paths
