"""`job submit --wait` follows the coordinator's states to a terminal one (a stub coordinator)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

import pytest

from protocol.ids import JobId
from tests.wallet.stub import serving
from tests.wallet.views import job_json
from wallet import jobs
from wallet.settings import WalletSettings

JOB = JobId(b"\x01" * 32)
JOB_HEX = "0x" + "01" * 32


class StubCoordinator(BaseHTTPRequestHandler):
    """Each events request streams the next state of ``script``; the job view shows it."""

    script: ClassVar[list[dict[str, Any]]] = []
    served: ClassVar[int] = 0

    def do_GET(self) -> None:
        cls = type(self)
        if self.path.endswith("/events"):
            view = cls.script[min(cls.served, len(cls.script) - 1)]
            cls.served += 1
            event = {"state": view["state"], "at": 0, "detail": {}}
            body = f"data: {json.dumps(event)}\n\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        view = cls.script[min(cls.served, len(cls.script)) - 1]
        raw = json.dumps(job_json(job_id=JOB_HEX, **view)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture
def coordinator() -> Iterator[WalletSettings]:
    with serving(StubCoordinator) as url:
        yield WalletSettings(coordinator_url=url)


def play(settings: WalletSettings, *states: dict[str, Any]) -> list[str]:
    StubCoordinator.script = list(states)
    StubCoordinator.served = 0
    seen: list[str] = []
    jobs.follow(settings, JOB, lambda e: seen.append(e.state), timeout=20)
    return seen


def test_a_dispute_is_followed_to_its_settlement(coordinator: WalletSettings) -> None:
    seen = play(
        coordinator,
        {"state": "committed"},
        {"state": "disputed"},
        {"state": "settled", "result_cid": "bafy"},
    )
    assert seen == ["committed", "disputed", "settled"]


@pytest.mark.parametrize("final", ["finalized", "reclaimed", "cancelled"])
def test_every_end_state_without_failure_returns(coordinator: WalletSettings, final: str) -> None:
    assert play(coordinator, {"state": "assigned"}, {"state": final}) == ["assigned", final]


def test_failed_raises_with_the_reason(coordinator: WalletSettings) -> None:
    failure = {"reason": "out of memory", "provider": "0xabc"}
    with pytest.raises(jobs.JobFailed, match=r"failed \(provider 0xabc\): out of memory"):
        play(coordinator, {"state": "failed", "failure": failure})


def test_aborted_raises_and_says_so(coordinator: WalletSettings) -> None:
    failure = {"reason": "no provider accepted", "provider": None}
    with pytest.raises(jobs.JobFailed, match=r"was aborted by its coordinator: no provider"):
        play(coordinator, {"state": "failed", "abort_tx": "0x" + "ab" * 32, "failure": failure})


def test_a_settled_failure_output_is_reported_as_the_jobs_failure(
    coordinator: WalletSettings,
) -> None:
    """Providers agreed that the job's own code failed: the job settled (they were paid for
    the time it ran), but the requester is told it failed, and why, not handed outputs."""
    from protocol.failure_output import ExitClass, failure_output_cid

    failure = {"reason": "nonzero_exit: exit code 2", "provider": "0xabc"}
    view = {"state": "settled", "result_cid": failure_output_cid(ExitClass.ERROR)}
    with pytest.raises(jobs.JobFailed, match=r"exited with an error .* exit code 2\)"):
        play(coordinator, {"state": "committed"}, {**view, "failure": failure})
