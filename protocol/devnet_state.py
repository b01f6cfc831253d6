"""The devnet state file: a versioned JSON record of what ``devnet up`` started.

A shared format, not a devnet module: the wallet, the provider and network profiles read
endpoints and contract addresses from it, and ``devnet down`` needs nothing but this file
to stop exactly what ``up`` started, so the file is written (atomically) as soon as each
process has a PID, not only at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.errors import DevnetError
from protocol.files import write_atomic

STATE_VERSION = 1
DEFAULT_STATE_FILE = Path(".devnet/state.json")


class DevAccount(BaseModel):
    """A funded development account (Anvil's deterministic mnemonic)."""

    model_config = ConfigDict(frozen=True)
    address: str
    private_key: str
    role: str = "spare"


class ProcessRecord(BaseModel):
    """A process the devnet started: ``pgid`` is its own process group."""

    model_config = ConfigDict(frozen=True)
    name: str
    pid: int
    pgid: int
    log: str
    workdir: str


class IpfsEndpoint(BaseModel):
    """One participant's IPFS node: RPC API, read-only gateway, swarm multiaddr."""

    model_config = ConfigDict(frozen=True)
    api: str
    gateway: str
    swarm: str
    workdir: str


class DevnetState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = STATE_VERSION
    rpc_url: str | None = None
    chain_id: int | None = None
    ipfs_api: str | None = None
    """The requester's (wallet's) IPFS node; with ``ipfs_nodes`` empty, everyone's."""
    ipfs_nodes: dict[str, IpfsEndpoint] = Field(default_factory=dict)
    """One node per participant (``requester``, ``coordinator``, ``provider-<i>``)."""
    coordinator_url: str | None = None
    coordinator_multiaddr: str | None = None
    accounts: list[DevAccount] = Field(default_factory=list)
    contracts: dict[str, str] = Field(default_factory=dict)
    processes: list[ProcessRecord] = Field(default_factory=list)
    root: str | None = None
    namespaces: list[str] = Field(default_factory=list)
    """An isolated devnet's network namespaces (``devnet up --isolated``), removed by down."""
    machine_link: str | None = None
    """The machine's link to an isolated devnet's bridge, removed by down."""


def load_state(path: Path) -> DevnetState:
    """Read a state file, with one clear error for a missing, unreadable or foreign file."""
    try:
        raw = path.read_text()
    except FileNotFoundError as exc:
        raise DevnetError(f"no devnet state file at {path} (is the devnet up?)") from exc
    except OSError as exc:
        raise DevnetError(f"cannot read devnet state file {path}: {exc}") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DevnetError(f"devnet state file {path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        found = data.get("version") if isinstance(data, dict) else type(data).__name__
        raise DevnetError(
            f"devnet state file {path} has version {found!r}, expected {STATE_VERSION}"
        )
    try:
        return DevnetState.model_validate(data)
    except ValidationError as exc:
        raise DevnetError(f"devnet state file {path} is invalid: {exc}") from exc


def save_state(path: Path, state: DevnetState) -> None:
    """Write atomically so a crash mid-write never leaves a half file for ``down``."""
    write_atomic(path, state.model_dump_json(indent=2).encode())
