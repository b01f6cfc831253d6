"""Start the market's own daemons on the devnet: one coordinator and N providers.

Each runs as ``python -m gpumarket_cli ...`` in its own process group, configured only
through its ``COORDINATOR_*`` / ``PROVIDER_*`` environment, with a keystore the devnet
writes from the role's dev account. A daemon is ready when it has written its ready file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from devnet.netns import Host
from devnet.process import spawn, wait_ready
from protocol.devnet_state import DevAccount, DevnetState, ProcessRecord
from protocol.errors import DevnetError
from protocol.identity import Identity, save_keystore

DEVNET_PASSWORD = "devnet"
DEVNET_SCRYPT_N = 2**12
"""Devnet keys are Anvil's public test keys: a cheap KDF costs nothing in secrecy."""
COORDINATOR_TIMEOUT_S = 90.0
PROVIDER_TIMEOUT_S = 150.0
ISOLATED_HTTP_PORT = 8000
ISOLATED_P2P_PORT = 4100
"""Ports on an isolated devnet's hosts (each namespace has every port to itself)."""


def _keystore(root: Path, account: DevAccount, name: str) -> tuple[Path, Path]:
    keys = root / "keys"
    path = keys / f"{name}.json"
    password = keys / "password"
    if not password.exists():
        keys.mkdir(parents=True, exist_ok=True)
        password.write_text(DEVNET_PASSWORD + "\n")
        password.chmod(0o600)
    if not path.exists():
        identity = Identity.from_private_key(account.private_key)
        save_keystore(path, identity, DEVNET_PASSWORD, scrypt_n=DEVNET_SCRYPT_N)
    return path, password


def _read_ready(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpumarket_cli", *args]


def _base_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COORDINATOR_", "PROVIDER_", "WALLET_"))
    }
    env.update(extra)
    return env


def ipfs_env(state: DevnetState, participant: str, prefix: str) -> dict[str, str]:
    """``<prefix>IPFS_*`` for a participant: its own node, every other node as a swarm peer
    to dial, and (for providers, who read the requester's inputs) the requester's gateway.
    On a devnet with one shared node, that node."""
    node = state.ipfs_nodes.get(participant)
    if node is None:
        assert state.ipfs_api
        return {f"{prefix}IPFS_API": state.ipfs_api}
    others = [n for name, n in state.ipfs_nodes.items() if name != participant]
    env = {
        f"{prefix}IPFS_API": node.api,
        f"{prefix}IPFS_PEERS": ",".join(n.swarm for n in others),
    }
    requester = state.ipfs_nodes.get("requester")
    if participant.startswith("provider") and requester is not None:
        env[f"{prefix}IPFS_GATEWAYS"] = requester.gateway
    return env


def start_coordinator(
    state: DevnetState, root: Path, host: Host | None = None
) -> tuple[ProcessRecord, dict[str, Any]]:
    """Start the coordinator with the devnet's coordinator account (with ``host``, in that
    host's namespace, serving on its address); wait for its ready file."""
    assert state.rpc_url and state.ipfs_api
    account = next(a for a in state.accounts if a.role == "coordinator")
    workdir = root / "coordinator"
    workdir.mkdir(parents=True, exist_ok=True)
    keystore, password = _keystore(root, account, "coordinator")
    env = _base_env(
        {
            "COORDINATOR_RPC_URL": state.rpc_url,
            "COORDINATOR_MARKET_ADDRESS": state.contracts["market"],
            "COORDINATOR_REGISTRY_ADDRESS": state.contracts["registry"],
            "COORDINATOR_TOKEN_ADDRESS": state.contracts["token"],
            "COORDINATOR_KEYSTORE": str(keystore),
            "COORDINATOR_PASSWORD_FILE": str(password),
            "COORDINATOR_DATA_DIR": str(workdir),
            "COORDINATOR_HTTP_HOST": host.address if host else "127.0.0.1",
            "COORDINATOR_HTTP_PORT": str(ISOLATED_HTTP_PORT) if host else "0",
            "COORDINATOR_P2P_HOST": host.address if host else "127.0.0.1",
            "COORDINATOR_P2P_PORT": str(ISOLATED_P2P_PORT) if host else "0",
            "COORDINATOR_REORG_MARGIN": "0",
            # Devnet jobs last seconds: sample the book often enough for its hourly history.
            "COORDINATOR_HISTORY_SAMPLE_S": "2",
            "COORDINATOR_HISTORY_FLUSH_S": "2",
            **ipfs_env(state, "coordinator", "COORDINATOR_"),
        }
    )
    ready_file = workdir / "coordinator.json"
    record = spawn(
        "coordinator",
        _cli("coordinator", "run"),
        log=workdir / "coordinator.log",
        workdir=workdir,
        env=env,
        host=host,
    )
    wait_ready(
        record,
        lambda: _read_ready(ready_file) is not None,
        timeout=COORDINATOR_TIMEOUT_S,
        what="coordinator",
    )
    ready = _read_ready(ready_file)
    assert ready is not None
    return record, ready


def provider_env(
    state: DevnetState, root: Path, account: DevAccount, index: int, runtime: str
) -> tuple[Path, dict[str, str]]:
    """The environment of devnet provider ``index`` (also used by tests that start one)."""
    assert state.rpc_url and state.ipfs_api
    workdir = root / f"provider-{index}"
    workdir.mkdir(parents=True, exist_ok=True)
    keystore, password = _keystore(root, account, f"provider-{index}")
    env = _base_env(
        {
            "PROVIDER_RPC_URL": state.rpc_url,
            "PROVIDER_MARKET_ADDRESS": state.contracts["market"],
            "PROVIDER_REGISTRY_ADDRESS": state.contracts["registry"],
            "PROVIDER_TOKEN_ADDRESS": state.contracts["token"],
            "PROVIDER_KEYSTORE": str(keystore),
            "PROVIDER_PASSWORD_FILE": str(password),
            "PROVIDER_WORK_DIR": str(workdir / "work"),
            "PROVIDER_RUNTIME": runtime,
            "PROVIDER_CPU_ONLY": "true",
            "PROVIDER_STAKE": "100",
            "PROVIDER_PRICE_PER_GPU_HOUR": str(1 + index),
            "PROVIDER_PRICE_PER_CPU_HOUR": str(Decimal(1 + index) / 2),
            "PROVIDER_ADVERT_PERIOD_S": "2",
            "PROVIDER_ADVERT_TTL_S": "10",
            # Every devnet provider shares one benchmark: they run on the same CPU.
            "PROVIDER_BENCHMARK_CACHE": str(root / "benchmark.json"),
            **ipfs_env(state, f"provider-{index}", "PROVIDER_"),
        }
    )
    if runtime == "process":
        env["PROVIDER_UNSAFE_PROCESS_RUNTIME"] = "true"
    if state.coordinator_multiaddr:
        env["PROVIDER_COORDINATOR_MULTIADDR"] = state.coordinator_multiaddr
    coordinator = next((a for a in state.accounts if a.role == "coordinator"), None)
    if coordinator is not None:
        # The devnet's own (bonded) coordinator is the one whose offers providers accept.
        env["PROVIDER_COORDINATORS"] = coordinator.address
    return workdir, env


def spawn_provider(
    state: DevnetState,
    root: Path,
    index: int,
    *,
    runtime: str = "bwrap",
    host: Host | None = None,
    settings: Mapping[str, str] | None = None,
) -> tuple[ProcessRecord, Path]:
    """Start provider ``index`` (with ``host``, in that host's namespace, listening on its
    address); returns its record and the ready file to wait for. ``settings`` are extra
    ``PROVIDER_*`` variables (e.g. ``PROVIDER_MAX_INPUT_BYTES``) over the devnet's own."""
    providers = [a for a in state.accounts if a.role == "provider"]
    if index >= len(providers):
        raise DevnetError(f"the devnet has {len(providers)} provider accounts, not {index + 1}")
    workdir, env = provider_env(state, root, providers[index], index, runtime)
    env.update(settings or {})
    if host is not None:
        env["PROVIDER_P2P_HOST"] = host.address
        env["PROVIDER_P2P_PORT"] = str(ISOLATED_P2P_PORT)
    record = spawn(
        f"provider-{index}",
        _cli("provider", "run"),
        log=workdir / "provider.log",
        workdir=workdir,
        env=env,
        host=host,
    )
    return record, Path(env["PROVIDER_WORK_DIR"]) / "provider.json"


def wait_provider(record: ProcessRecord, ready_file: Path) -> dict[str, Any]:
    wait_ready(
        record,
        lambda: _read_ready(ready_file) is not None,
        timeout=PROVIDER_TIMEOUT_S,
        what=record.name,
    )
    ready = _read_ready(ready_file)
    assert ready is not None
    return ready
