"""`gpumarket devnet up|status|down` as a user runs them, with real Anvil and IPFS."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contracts.chain import Web3Chain
from contracts.models import Deployment
from devnet.network import DEVNET_MIN_COORDINATOR_BOND
from devnet.process import is_alive
from protocol.devnet_state import load_state

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "gpumarket_cli"]
# Supervision is what these tests check: chain, IPFS and contracts are enough (the market's
# own daemons are started by the end-to-end tests).
BARE = ("--no-coordinator", "--providers", "0")


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_help_explains_every_command() -> None:
    top = run("--help")
    assert top.returncode == 0
    assert "devnet" in top.stdout
    sub = run("devnet", "--help")
    assert sub.returncode == 0
    for command in ("up", "status", "down"):
        assert command in sub.stdout
        detail = run("devnet", command, "--help")
        assert detail.returncode == 0 and "--state" in detail.stdout


def test_up_status_down_leaves_no_process_behind(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    up = run("devnet", "up", "--state", str(state_file), *BARE, "--json")
    assert up.returncode == 0, up.stderr
    state = load_state(state_file)
    assert json.loads(up.stdout)["rpc_url"] == state.rpc_url
    pids = [p.pid for p in state.processes]
    assert len(pids) >= 2 and all(is_alive(pid) for pid in pids)
    # The coordinator account is bonded, so jobs may name it before its daemon starts.
    coordinator = next(a for a in state.accounts if a.role == "coordinator")
    assert state.rpc_url is not None and state.chain_id is not None
    reader = Web3Chain(
        state.rpc_url,
        Deployment.from_addresses(state.chain_id, state.contracts),
        coordinator.private_key,
    )
    assert reader.coordinator_info(coordinator.address).bond == DEVNET_MIN_COORDINATOR_BOND

    status = run("devnet", "status", "--state", str(state_file), "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert all(check["ok"] for check in json.loads(status.stdout))

    down = run("devnet", "down", "--state", str(state_file))
    assert down.returncode == 0, down.stderr
    assert not any(is_alive(pid) for pid in pids)
    assert not state_file.exists()
    assert state.root is not None and not Path(state.root).exists()


def test_down_after_up_was_killed(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    proc = subprocess.Popen(
        [*CLI, "devnet", "up", "--state", str(state_file), *BARE],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if state_file.exists() and load_state(state_file).processes:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    pids = [p.pid for p in load_state(state_file).processes]
    assert pids
    down = run("devnet", "down", "--state", str(state_file))
    assert down.returncode == 0, down.stderr
    assert not any(is_alive(pid) for pid in pids)


def test_taken_port_is_refused_with_nothing_left_running(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        up = run("devnet", "up", "--state", str(state_file), *BARE, "--ipfs-port", str(port))
    assert up.returncode == 1
    assert f"ipfs API: port 127.0.0.1:{port} is already in use" in up.stderr
    # up cleaned up after itself: no state file, and the Anvil it started is gone.
    assert not state_file.exists()


def test_missing_npm_tool_is_named(tmp_path: Path) -> None:
    env = dict(os.environ, GPUMARKET_NODE_MODULES=str(tmp_path / "nowhere"))
    up = run("devnet", "up", "--state", str(tmp_path / "s.json"), *BARE, env=env)
    assert up.returncode == 1
    assert "anvil is not installed" in up.stderr and "make bootstrap" in up.stderr


def test_status_and_down_without_a_devnet_say_so(tmp_path: Path) -> None:
    for command in ("status", "down"):
        result = run("devnet", command, "--state", str(tmp_path / "missing.json"))
        assert result.returncode == 1
        assert "no devnet state file" in result.stderr
