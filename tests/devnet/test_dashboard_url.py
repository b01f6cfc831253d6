"""`devnet up` and the demo show where the coordinator's dashboard is; `--keep` leaves the
demo's devnet running."""

from __future__ import annotations

import pytest
from rich.console import Console

from devnet.cli import _endpoints_table, dashboard_url
from devnet.demo import main
from protocol.devnet_state import DevnetState


def test_the_endpoints_table_names_the_dashboard() -> None:
    state = DevnetState(rpc_url="http://127.0.0.1:1", coordinator_url="http://127.0.0.1:8123")
    console = Console(width=200, record=True)
    console.print(_endpoints_table(state))
    text = console.export_text()
    assert "dashboard" in text and "http://127.0.0.1:8123/dashboard" in text
    assert dashboard_url(state) == "http://127.0.0.1:8123/dashboard"
    bare = DevnetState(rpc_url="http://127.0.0.1:1")
    assert "dashboard" not in _table_text(bare) and dashboard_url(bare) == "-"


def _table_text(state: DevnetState) -> str:
    console = Console(width=200, record=True)
    console.print(_endpoints_table(state))
    return console.export_text()


def test_the_demo_offers_to_keep_its_devnet(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "--keep" in capsys.readouterr().out
