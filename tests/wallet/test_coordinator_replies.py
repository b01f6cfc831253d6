"""A coordinator reply that does not fit the shared view models is one clear error.

The stub coordinator is a real HTTP server on loopback answering fixed bodies; the wallet's
client parses them with ``protocol.views`` and must name the request and the field at fault
instead of failing later with a KeyError or a validation traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest

from protocol.ids import JobId
from tests.wallet.stub import serving
from tests.wallet.views import JOB_HEX, job_json, option_json, quote_json, seat_json
from wallet.coordinator import CoordinatorClient, CoordinatorRequestError

JOB = JobId(b"\x01" * 32)
ROOT = Path(__file__).resolve().parents[2]


class FixedReplies(BaseHTTPRequestHandler):
    """Answers each path with the body in ``replies`` (404 for any other)."""

    replies: ClassVar[dict[str, bytes]] = {}

    def _answer(self) -> None:
        body = type(self).replies.get(self.path.split("?")[0])
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        events = self.path.endswith("/events")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if events else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer()

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture
def coordinator() -> Iterator[str]:
    with serving(FixedReplies) as url:
        yield url
    FixedReplies.replies = {}


def serve(**replies: Any) -> None:
    FixedReplies.replies = {
        path: body if isinstance(body, bytes) else json.dumps(body).encode()
        for path, body in replies.items()
    }


JOB_PATH = f"/jobs/{JOB_HEX}"


def test_a_whole_job_view_parses_into_typed_fields(coordinator: str) -> None:
    seat = seat_json(0, price="1500", pay="700", assigned_at=5)
    serve(**{JOB_PATH: job_json(state="settled", providers=[seat])})
    with CoordinatorClient(coordinator) as client:
        view = client.job(JOB)
    assert view.state == "settled" and view.providers[0].price == "1500"
    assert view.providers[0].assigned_at == 5 and view.failure is None


def test_a_job_view_missing_a_field_names_the_request_and_the_field(coordinator: str) -> None:
    body = job_json()
    del body["state"]
    serve(**{JOB_PATH: body})
    with CoordinatorClient(coordinator) as client, pytest.raises(CoordinatorRequestError) as info:
        client.job(JOB)
    message = str(info.value)
    assert f"answered GET {JOB_PATH} with a reply that is not a JobView" in message
    assert "state: Field required" in message
    assert coordinator in message


def test_a_nested_field_of_the_wrong_type_is_named_by_its_path(coordinator: str) -> None:
    options = [option_json("auto", 1, [10]), option_json("2", 2, []), option_json("3", 3, [])]
    body = quote_json(options)
    body["options"][0]["providers"][0]["price"] = {"tokens": 1}
    serve(**{"/quote": body})
    with CoordinatorClient(coordinator) as client, pytest.raises(CoordinatorRequestError) as info:
        client.quote("name: q")
    assert "not a Quote" in str(info.value)
    assert "options.0.providers.0.price: Input should be a valid string" in str(info.value)


def test_a_list_reply_that_is_not_a_list_is_refused(coordinator: str) -> None:
    serve(**{"/jobs": {"jobs": {"not": "a list"}}})
    with CoordinatorClient(coordinator) as client, pytest.raises(CoordinatorRequestError) as info:
        client.jobs()
    assert "not a JobList (jobs: Input should be a valid list)" in str(info.value)


def test_an_event_that_is_not_one_is_refused(coordinator: str) -> None:
    serve(**{f"{JOB_PATH}/events": b'data: {"at": 1.0, "detail": {}}\n\n'})
    with CoordinatorClient(coordinator) as client, pytest.raises(CoordinatorRequestError) as info:
        list(client.events(JOB, timeout=5))
    assert "sent an event on" in str(info.value)
    assert "not a JobEvent (state: Field required)" in str(info.value)


def test_an_event_that_is_not_json_is_refused(coordinator: str) -> None:
    serve(**{f"{JOB_PATH}/events": b"data: {oops\n\n"})
    with CoordinatorClient(coordinator) as client, pytest.raises(CoordinatorRequestError) as info:
        list(client.events(JOB, timeout=5))
    assert "malformed JSON" in str(info.value)


def test_the_cli_prints_one_error_line_for_a_malformed_reply(
    coordinator: str, tmp_path: Path
) -> None:
    body = job_json()
    body["providers"] = [{"address": "0xabc"}]
    serve(**{JOB_PATH: body})
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WALLET_COORDINATOR_URL": coordinator,
        "HOME": str(tmp_path),
    }
    env.pop("WALLET_DEVNET_STATE", None)
    done = subprocess.run(
        [sys.executable, "-m", "gpumarket_cli", "job", "status", JOB_HEX],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: coordinator at {coordinator}: answered GET {JOB_PATH}")
    assert "providers.0.peer_id: Field required" in lines[0]
    assert "and 11 more" in lines[0]
