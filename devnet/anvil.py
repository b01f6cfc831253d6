"""A supervised Anvil node on a loopback port."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

from devnet.netns import Host
from devnet.process import require_free_port, spawn, stop, wait_ready
from devnet.tools import npm_tool
from protocol.devnet_state import DevAccount, ProcessRecord
from protocol.errors import DevnetError

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
CHAIN_ID = 31337
HARDFORK = "cancun"
"""Pinned EVM version; solc's evmVersion is pinned to the same."""
ISOLATED_PORT = 8545
"""Anvil's port on an isolated devnet's chain host."""

_LISTENING = re.compile(r"Listening on (?:\d{1,3}(?:\.\d{1,3}){3}|localhost):(\d+)")


def dev_accounts(count: int = 10) -> list[DevAccount]:
    """The deterministic funded accounts of Anvil's default mnemonic."""
    Account.enable_unaudited_hdwallet_features()
    out = []
    for i in range(count):
        acct = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        out.append(DevAccount(address=acct.address, private_key=acct.key.hex()))
    return out


def rpc_call(url: str, method: str, params: list[Any] | None = None, timeout: float = 5.0) -> Any:
    """One JSON-RPC call; raises DevnetError naming the endpoint on failure."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    try:
        resp = httpx.post(url, json=body, timeout=timeout)
        data = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise DevnetError(f"RPC {url} did not answer {method}: {exc}") from exc
    if "error" in data:
        raise DevnetError(f"RPC {url} {method} failed: {data['error']}")
    return data["result"]


@dataclass
class AnvilNode:
    """A running Anvil: its endpoint, accounts and process record."""

    rpc_url: str
    chain_id: int
    process: ProcessRecord
    accounts: list[DevAccount] = field(default_factory=dev_accounts)

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        return rpc_call(self.rpc_url, method, params)

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> None:
        """Roll the chain back to a snapshot, then set its clock to this host's time again.

        Anvil rolls the clock back with the state, so without the second step every revert
        leaves block time behind the wall clock by as long as the snapshot lived, and the lag
        adds up over a session; a provider judging a commit deadline by its own clock would
        then see every deadline as already past. A live chain's block time follows the wall
        clock, and so does a reverted devnet's."""
        if not self.rpc("evm_revert", [snapshot_id]):
            raise DevnetError(f"evm_revert({snapshot_id}) was refused by {self.rpc_url}")
        latest = int(self.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
        self.rpc("evm_setTime", [max(latest, int(time.time()))])

    def stop(self) -> None:
        stop(self.process)


def start_anvil(
    workdir: Path,
    *,
    port: int = 0,
    timeout: float = 20.0,
    block_time: float | None = None,
    extra_args: Sequence[str] = (),
    host: Host | None = None,
) -> AnvilNode:
    """Start Anvil on 127.0.0.1 (``port=0`` lets it pick) and wait for ``eth_chainId``.

    ``block_time`` mines a block every so many seconds instead of one per transaction;
    ``extra_args`` go to Anvil as they are (``--no-mining``, ``--gas-limit N``, ...).
    With ``host``, Anvil runs in that host's namespace on its address (port 8545 unless
    given: the namespace has every port to itself)."""
    address = host.address if host is not None else "127.0.0.1"
    if host is not None:
        port = port or ISOLATED_PORT
    elif port:
        require_free_port(port, "anvil")
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "anvil.log"
    argv = [
        str(npm_tool("anvil")),
        "--host",
        address,
        "--port",
        str(port),
        "--chain-id",
        str(CHAIN_ID),
        "--hardfork",
        HARDFORK,
        "--accounts",
        "10",
        "--balance",
        "10000",
    ]
    if block_time:
        argv += ["--block-time", str(block_time)]
    argv += list(extra_args)
    record = spawn("anvil", argv, log=log, workdir=workdir, host=host)
    found: dict[str, str] = {}

    def ready() -> bool:
        if "url" not in found:
            match = _LISTENING.search(log.read_text(errors="replace"))
            if not match:
                return False
            found["url"] = f"http://{address}:{match.group(1)}"
        try:
            return int(rpc_call(found["url"], "eth_chainId", timeout=1.0), 16) == CHAIN_ID
        except DevnetError:
            return False

    wait_ready(record, ready, timeout=timeout, what=f"anvil (log {log})")
    return AnvilNode(rpc_url=found["url"], chain_id=CHAIN_ID, process=record)


def check_anvil(url: str) -> int:
    """The chain id served at ``url``; DevnetError if it does not answer."""
    return int(rpc_call(url, "eth_chainId", timeout=2.0), 16)


__all__ = [
    "ANVIL_MNEMONIC",
    "CHAIN_ID",
    "HARDFORK",
    "AnvilNode",
    "check_anvil",
    "dev_accounts",
    "start_anvil",
]
