"""``gpumarket provider status`` shows the provider its standing at its coordinators, read
from a served coordinator API; an unreachable coordinator or one that does not know the
provider is one clear line, never a traceback."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import typer
from typer.testing import CliRunner, Result

from contracts.models import ProviderInfo
from coordinator.api import create_app
from coordinator.matching.book import ProviderBook
from coordinator.metrics import Metrics
from coordinator.signals import Signals
from coordinator.store import AsyncStore, JobRecord, ReputationRecord, Store
from protocol.identity import Identity
from protocol.ids import Wei, to_wei
from protocol.p2p.asgi import serve_asgi
from protocol.p2p.testing import dev_private_key
from provider_node import commands
from provider_node.commands import register_commands
from provider_node.standing import StandingUnavailable, fetch_standing
from tests.coordinator.factories import cpu_advert

PROVIDER = Identity.from_private_key(dev_private_key(1, "status-standing"))
COORDINATOR = Identity.from_private_key(dev_private_key(2, "status-standing"))


class Chain:
    address = PROVIDER.address

    def gas_shortfall(self, gas: int) -> None:
        return None

    def provider_info(self, provider: str) -> ProviderInfo:
        return ProviderInfo(
            address=PROVIDER.address,
            registered=True,
            group=0,
            stake=to_wei("100"),
            locked=Wei(0),
            free=to_wei("100"),
            earned=Wei(0),
            completed=0,
            slashed=0,
            unbonding=Wei(0),
            unbond_ready_at=0,
        )


class Backend:
    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self.book = ProviderBook(time.time)
        self.signals = Signals()
        self.metrics = Metrics()

    async def notice(self, job_id: str) -> JobRecord:
        raise NotImplementedError

    def chain_block(self) -> int:
        return 0

    def settle_batches(self) -> int:
        return 0


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    for key in list(os.environ):
        if key.startswith("PROVIDER_"):
            monkeypatch.delenv(key)
    unused = "0x" + "11" * 20
    env = {
        "RPC_URL": "http://x",
        "MARKET_ADDRESS": unused,
        "REGISTRY_ADDRESS": unused,
        "TOKEN_ADDRESS": unused,
        "KEYSTORE": str(tmp_path / "k.json"),
        "IPFS_API": "http://y",
        "WORK_DIR": str(tmp_path),
        "COORDINATORS": COORDINATOR.address,
    }
    for key, value in env.items():
        monkeypatch.setenv(f"PROVIDER_{key}", value)
    monkeypatch.setattr(commands, "_chain", lambda settings: Chain())
    typer_app = typer.Typer()
    register_commands(typer_app)
    return typer_app


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def invoke(app: typer.Typer, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run the CLI in a thread, so the served API keeps answering in this trio run."""
    return await trio.to_thread.run_sync(
        lambda: CliRunner().invoke(app, ["status", *args], env=env)
    )


async def test_status_prints_the_standing_read_from_the_coordinator(
    tmp_path: Path, app: typer.Typer
) -> None:
    store = AsyncStore(Store(f"sqlite:///{tmp_path / 'c.sqlite'}"))
    now = time.time()
    await store.seed_reputation(
        ReputationRecord(PROVIDER.address, 8.0, 6.0, now, successes=7, slashes=1, timeouts=2)
    )
    backend = Backend(store)
    assert backend.book.accept(cpu_advert(PROVIDER, {"bf16": 0.5, "fp32": 0.2}))
    backend.book.record_check(
        PROVIDER.address, "fp32", passed=False, tflops=0.2, devices=1, reason="took 9s"
    )
    try:
        async with serve_asgi(create_app(backend)) as server:
            text = await invoke(app, "--coordinator-url", server.url)
            assert text.exit_code == 0, text.output
            # Its latest speed challenge per dtype, as this coordinator judged it.
            assert re.search(r"speed: +fp32 0.2 TFLOPS, failed \d+ s ago: took 9s", text.output)
            assert f"standing at {server.url}:" in text.output
            assert "outcomes:     7 successes, 1 slashes, 0 faults, 2 timeouts, 0 withheld" in (
                text.output
            )
            assert "alpha 8.00, beta 6.00" in text.output
            assert "newcomer" in text.output  # 12 outcomes of evidence: below 20
            shown = await invoke(app, "--json", env={"PROVIDER_COORDINATOR_URL": server.url + "/"})
            assert shown.exit_code == 0, shown.output
            standing: dict[str, Any] = json.loads(shown.output)["standing"][server.url + "/"]
            assert standing["outcomes"]["successes"] == 7
            assert standing["established"] is False and standing["newcomer"] is True
            assert 0 < standing["lower_bound"] < standing["mean"] == pytest.approx(8 / 14)
    finally:
        store.sync.close()


async def test_an_unknown_provider_or_a_dead_coordinator_is_one_clear_line(
    tmp_path: Path, app: typer.Typer
) -> None:
    store = AsyncStore(Store(f"sqlite:///{tmp_path / 'c.sqlite'}"))
    dead = f"http://127.0.0.1:{closed_port()}"
    try:
        async with serve_asgi(create_app(Backend(store))) as server:
            result = await invoke(app, "--coordinator-url", server.url, "--coordinator-url", dead)
    finally:
        store.sync.close()
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, result.output
    assert errors[0] == (
        f"error: coordinator at {server.url}: no standing for {PROVIDER.address} yet "
        "(no verified outcome counted there)"
    )
    assert errors[1].startswith(f"error: coordinator at {dead}: unreachable (ConnectError")
    assert "consent policy" in result.output  # the rest of the status still shows
    assert "standing at" not in result.output


async def test_without_a_coordinator_url_status_reads_no_standing(app: typer.Typer) -> None:
    result = await invoke(app, "--json")
    assert result.exit_code == 0, result.output
    assert "standing" not in json.loads(result.output)


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (200, b"<html>hello</html>", "answered with something that is not a standing"),
        (200, b'{"alpha": 1}', "answered with something that is not a standing"),
        (503, b'{"error": "Unavailable", "detail": "database unavailable"}', "answered 503"),
    ],
)
def test_a_coordinator_answering_something_else_is_one_line(
    status: int, body: bytes, says: str
) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    with pytest.raises(StandingUnavailable) as info:
        fetch_standing("http://c", PROVIDER.address, transport=transport)
    assert says in str(info.value) and "\n" not in str(info.value)
