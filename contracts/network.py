"""Network profiles: which chain, which contracts, and how to send and confirm on it.

A profile names everything a side needs to reach a market on one chain: the RPC URL and the
chain id it must serve, the market and token addresses, the block the market was deployed
in, how many blocks must follow a receipt before it counts (``confirmations``), how far
behind the head the coordinator reads events (``reorg_margin``), fee caps and how long a
transaction may wait before it is replaced. Profiles live in one TOML file, one table
per name::

    [base-sepolia]
    rpc_url = "https://sepolia.base.org"
    chain_id = 84532
    market = "0x..."
    token = "0x..."
    start_block = 123456
    confirmations = 3
    reorg_margin = 10
    max_fee_gwei = 5

The file is ``--networks FILE``, else ``$GPUMARKET_NETWORKS_FILE``, else
``~/.gpumarket/networks.toml``; the profile is ``--network NAME`` or
``$GPUMARKET_NETWORK``. ``devnet`` is always the profile of the local devnet, derived from
its state file (``$GPUMARKET_DEVNET_STATE`` or ``.devnet/state.json``): automine, no
confirmations, no margin, the sender's defaults.

Every side reads profiles the same way: :func:`apply_profile` fills a settings class's
unset fields from the selected profile (environment variables and flags still win), and
:meth:`NetworkProfile.send_policy` gives the transaction sender its caps and deadlines.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from web3 import Web3

from contracts.deploy import connect
from contracts.fees import GWEI, FeePolicy
from contracts.models import Deployment
from contracts.sender import SendPolicy
from protocol.errors import ConfigError, MessageError
from protocol.ids import Address, parse_address

NETWORK_ENV = "GPUMARKET_NETWORK"
NETWORKS_FILE_ENV = "GPUMARKET_NETWORKS_FILE"
DEVNET_STATE_ENV = "GPUMARKET_DEVNET_STATE"
DEFAULT_NETWORKS_FILE = Path.home() / ".gpumarket" / "networks.toml"
DEVNET = "devnet"
MAX_PROFILE_BYTES = 1 << 20


class PhaseWindows(BaseModel):
    """The margins a requester's wallet sizes a job's deadlines with (``wallet/windows.py``),
    in seconds. Each must hold the transactions of its phase, confirmations included: on a
    slow chain they grow with the block time (:meth:`suited`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    assign_window_s: int = Field(default=120, ge=1, le=86_400)
    """From creation to the first seats: matching, offers, the providers' consent."""
    commit_margin_s: int = Field(default=180, ge=1, le=86_400)
    """Beyond the timeout: fetching inputs, hashing the outputs, an on-chain commit."""
    reveal_window_s: int = Field(default=300, ge=1, le=86_400)
    """For reveals after the last commit deadline (off chain first, on chain as a fallback)."""
    settle_margin_s: int = Field(default=300, ge=1, le=86_400)
    """After the reveal window: the coordinator's settle transaction."""

    @classmethod
    def suited(cls, block_time_s: float, confirmations: int) -> PhaseWindows:
        """The defaults, each raised to at least ten rounds of a transaction's wait (its
        block and its confirmations) on a chain with this block time."""
        need = int(10 * block_time_s * (confirmations + 1) + 0.999)
        base = cls()
        return cls(
            assign_window_s=max(base.assign_window_s, need),
            commit_margin_s=max(base.commit_margin_s, need),
            reveal_window_s=max(base.reveal_window_s, need),
            settle_margin_s=max(base.settle_margin_s, need),
        )


class NetworkProfile(BaseModel):
    """One named network (see the module docstring); amounts of gas price in gwei."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    rpc_url: str
    chain_id: int = Field(gt=0)
    market: str
    token: str
    registry: str | None = None
    """The provider registry: the market contract itself unless given."""
    start_block: int = Field(default=0, ge=0)
    confirmations: int = Field(default=0, ge=0, le=1000)
    reorg_margin: int = Field(default=0, ge=0, le=1000)
    block_time_s: float = Field(default=12.0, gt=0, le=600)
    max_fee_gwei: Decimal = Field(default=Decimal(500), gt=0)
    max_priority_fee_gwei: Decimal = Field(default=Decimal(5), ge=0)
    priority_fee_floor_gwei: Decimal = Field(default=Decimal("0.1"), ge=0)
    replace_after_s: float | None = Field(default=None, gt=0, le=86_400)
    """Replace a transaction still unmined after this long; default: five block times."""
    receipt_timeout_s: float | None = Field(default=None, gt=0, le=86_400)
    """Give up waiting (the transaction stays in the journal) after this long; default:
    long enough for four replacements and the confirmations."""
    phases: PhaseWindows | None = None
    """A ``[NAME.phases]`` table; unset: :meth:`PhaseWindows.suited` to the block time."""
    ipfs_api: str | None = None
    coordinator_url: str | None = None
    coordinator_address: str | None = None

    @property
    def phase_windows(self) -> PhaseWindows:
        """The profile's phase windows, else ones suited to its block time and confirmations."""
        return self.phases or PhaseWindows.suited(self.block_time_s, self.confirmations)

    @field_validator("market", "token", "registry", "coordinator_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return parse_address(value)
        except MessageError as exc:
            raise ValueError(str(exc)) from exc

    @property
    def registry_address(self) -> Address:
        """The registry: its own address when set, else the market (one contract today)."""
        return Address(self.registry or self.market)

    def deployment(self) -> Deployment:
        """The profile's contracts as a :class:`Deployment` on its chain."""
        return Deployment(
            chain_id=self.chain_id,
            token=Address(self.token),
            registry=self.registry_address,
            market=Address(self.market),
        )

    def send_policy(self) -> SendPolicy:
        """The transaction sender's caps, deadlines and confirmations on this network."""
        fees = FeePolicy(
            max_fee_cap=_wei(self.max_fee_gwei),
            priority_fee_cap=_wei(self.max_priority_fee_gwei),
            priority_fee_floor=_wei(self.priority_fee_floor_gwei),
            cap_setting=f"max_fee_gwei of network {self.name!r}",
        )
        replace = self.replace_after_s or 5 * self.block_time_s
        timeout = self.receipt_timeout_s or 5 * replace + (self.confirmations + 1) * (
            self.block_time_s * 2
        )
        return SendPolicy(
            fees=fees,
            confirmations=self.confirmations,
            replace_after_s=replace,
            receipt_timeout_s=timeout,
            poll_s=min(1.0, self.block_time_s / 4),
        )

    def connect(self) -> Web3:
        """A web3 client on this network's node, refused (:class:`WrongChainId`) when the
        node serves another chain."""
        return connect(self.rpc_url, self.chain_id, network=self.name)


def _wei(gwei: Decimal) -> int:
    return int(gwei * GWEI)


def networks_file(given: Path | None = None) -> Path:
    """The network profiles file: ``given``, else ``$GPUMARKET_NETWORKS_FILE``, else
    ``~/.gpumarket/networks.toml``."""
    if given is not None:
        return given
    env = os.environ.get(NETWORKS_FILE_ENV)
    return Path(env) if env else DEFAULT_NETWORKS_FILE


def load_profiles(path: Path) -> dict[str, NetworkProfile]:
    """Every profile in the TOML file ``path``; a ConfigError names what is wrong."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PROFILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no network profiles file at {path}: create it (one [NAME] table per network) "
            f"or point --networks / {NETWORKS_FILE_ENV} at one"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read network profiles {path}: {exc.strerror}") from exc
    if len(raw) > MAX_PROFILE_BYTES:
        raise ConfigError(f"network profiles file {path} is over {MAX_PROFILE_BYTES} bytes")
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"network profiles file {path} is not valid TOML: {exc}") from exc
    profiles = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {name!r} must be a table ([{name}]), not a value")
        try:
            profiles[name] = NetworkProfile(name=name, **table)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise ConfigError(f"{path}: network {name!r} is invalid: {problems}") from None
    return profiles


def devnet_profile(state_file: Path | None = None) -> NetworkProfile:
    """The local devnet's profile, from the state file ``devnet up`` wrote."""
    from protocol.devnet_state import DEFAULT_STATE_FILE, load_state

    path = state_file or Path(os.environ.get(DEVNET_STATE_ENV) or DEFAULT_STATE_FILE)
    state = load_state(path)
    if state.rpc_url is None or state.chain_id is None or not state.contracts:
        raise ConfigError(f"devnet state file {path} has no chain yet (is the devnet up?)")
    coordinator = next((a for a in state.accounts if a.role == "coordinator"), None)
    return NetworkProfile(
        name=DEVNET,
        rpc_url=state.rpc_url,
        chain_id=state.chain_id,
        market=state.contracts["market"],
        token=state.contracts["token"],
        registry=state.contracts.get("registry"),
        block_time_s=1.0,
        replace_after_s=SendPolicy().replace_after_s,
        receipt_timeout_s=SendPolicy().receipt_timeout_s,
        ipfs_api=state.ipfs_api,
        coordinator_url=state.coordinator_url,
        coordinator_address=coordinator.address if coordinator else None,
    )


def selected_network(given: str | None = None) -> str | None:
    """The network asked for: ``given``, else ``$GPUMARKET_NETWORK``; None for neither."""
    return given or os.environ.get(NETWORK_ENV) or None


def resolve_profile(name: str, networks: Path | None = None) -> NetworkProfile:
    """The profile ``name``: the devnet's, or one from the profiles file."""
    if name == DEVNET:
        return devnet_profile()
    path = networks_file(networks)
    profiles = load_profiles(path)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(
            f"no network {name!r} in {path} (it has: {known}; and {DEVNET!r} for the devnet)"
        )
    return profiles[name]


def apply_profile(
    prefix: str,
    given: Mapping[str, Any],
    fields: Mapping[str, str],
) -> tuple[dict[str, Any], NetworkProfile | None]:
    """Settings values with the selected profile's under them.

    ``given`` are a settings class's keyword overrides (flags), ``fields`` maps a settings
    field to a profile attribute. The network is ``given["network"]``, else
    ``$<prefix>NETWORK``, else ``$GPUMARKET_NETWORK``. A field keeps its flag or its
    ``<prefix>FIELD`` environment variable when set; only the rest come from the profile.
    """
    out = dict(given)
    name = given.get("network") or os.environ.get(f"{prefix}NETWORK") or selected_network()
    if not name:
        return out, None
    networks = given.get("networks_file") or os.environ.get(f"{prefix}NETWORKS_FILE")
    profile = resolve_profile(str(name), Path(networks) if networks else None)
    out["network"] = name
    for field, attribute in fields.items():
        if out.get(field) is not None or f"{prefix}{field.upper()}" in os.environ:
            continue
        value = getattr(profile, attribute)
        if value is not None:
            out[field] = value
    return out, profile


def send_policy_for(network: str | None, networks: Path | None = None) -> SendPolicy:
    """The sender policy of ``network`` (the defaults, as on the devnet, for None)."""
    return resolve_profile(network, networks).send_policy() if network else SendPolicy()


def phase_windows_for(network: str | None, networks: Path | None = None) -> PhaseWindows:
    """The phase windows of ``network`` (the defaults, as on the devnet, for None)."""
    return resolve_profile(network, networks).phase_windows if network else PhaseWindows()
