"""Wallet settings: where the keys live and which market to talk to.

Values come from ``WALLET_*`` environment variables, then CLI flags. Accounts are read
from ``keystore_dir`` and, after it, from Foundry's keystore folder. ``--devnet STATE``
fills every endpoint and contract address from a devnet state file, so on the devnet a
requester needs nothing else; a network profile (``gpumarket --network NAME``,
``WALLET_NETWORK`` or ``GPUMARKET_NETWORK``; see ``contracts/network.py``) does the same for
any chain and adds its fee caps and confirmations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.models import Deployment
from contracts.network import PhaseWindows, apply_profile, phase_windows_for, send_policy_for
from contracts.sender import SendPolicy
from contracts.settings import IpfsGateways, IpfsPeers
from protocol.devnet_state import load_state
from protocol.errors import ConfigError
from protocol.ipfs import KuboContentStore

DEFAULT_KEYSTORE_DIR = Path.home() / ".gpumarket" / "keystores"
DEFAULT_JOURNAL_DIR = Path.home() / ".gpumarket" / "txs"
FOUNDRY_KEYSTORE_DIR = Path.home() / ".foundry" / "keystores"
"""Where ``cast wallet new``/``cast wallet import`` keep their keystores (no suffix)."""


PROFILE_FIELDS = {
    "rpc_url": "rpc_url",
    "chain_id": "chain_id",
    "ipfs_api": "ipfs_api",
    "coordinator_url": "coordinator_url",
    "coordinator_address": "coordinator_address",
    "token_address": "token",
    "registry_address": "registry_address",
    "market_address": "market",
}
"""Settings a network profile fills (settings field: profile attribute)."""


DEFAULT_MAX_INPUT_BYTES = 64 << 30


def check_pin_to(value: str) -> str:
    """A pinning node's RPC API URL, without a trailing slash; ValueError when it is none."""
    url = value.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url) > 2000 or " " in url:
        raise ValueError(
            f"pinning node {value!r} must be the http(s) URL of a Kubo RPC API "
            "(WALLET_PIN_TO or --pin-to), e.g. http://127.0.0.1:5001"
        )
    return url


class WalletSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WALLET_", extra="ignore")

    keystore_dir: Path = DEFAULT_KEYSTORE_DIR
    foundry_keystore_dir: Path | None = FOUNDRY_KEYSTORE_DIR
    """Also offer the accounts Foundry's ``cast wallet`` made (a missing folder is skipped)."""
    account: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    rpc_url: str | None = None
    chain_id: int | None = None
    ipfs_api: str | None = None
    ipfs_peers: IpfsPeers = ()
    """Comma-separated swarm multiaddrs of other IPFS nodes for the wallet's node to dial
    (on the devnet: every other participant's node)."""
    ipfs_gateways: IpfsGateways = ()
    """Comma-separated HTTP gateways to stream results from directly (verified)."""
    pin_to: str | None = None
    """A pinning node's Kubo RPC API URL (one you run or rent): `job submit` uploads the
    inputs and spec there too and `job result` each verified result, pinned, so they
    outlive the wallet's own node and the providers' and coordinator's copies."""
    max_input_bytes: int = Field(default=DEFAULT_MAX_INPUT_BYTES, ge=1)
    """All path inputs of one job together. Uploads stream from disk (memory stays flat
    whatever the size); each provider bounds what it fetches (``PROVIDER_MAX_INPUT_BYTES``)."""
    ipfs_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    """Longest silence from the IPFS node (or a gateway, at most 10 s) before giving up."""
    coordinator_url: str | None = None
    coordinator_address: str | None = None
    token_address: str | None = None
    registry_address: str | None = None
    market_address: str | None = None
    devnet_state: Path | None = None
    network: str | None = None
    """A network profile (``contracts/network.py``; also ``$GPUMARKET_NETWORK``) that fills
    the endpoints and addresses left unset, and sets fee caps and confirmations."""
    networks_file: Path | None = None
    journal_dir: Path = DEFAULT_JOURNAL_DIR
    """Where transactions in flight are recorded (with a network profile)."""

    @field_validator("pin_to")
    @classmethod
    def _pin_to(cls, value: str | None) -> str | None:
        return None if value is None else check_pin_to(value)

    def content_store(self, *, own_node_only: bool = False) -> KuboContentStore:
        """A content store on the wallet's IPFS node, dialling its peers when opened;
        ``own_node_only``: no peers or gateways (for the node's own pins)."""
        return KuboContentStore(
            self.need("ipfs_api"),
            timeout=self.ipfs_timeout_s,
            peers=() if own_node_only else self.ipfs_peers,
            gateways=() if own_node_only else self.ipfs_gateways,
        )

    def with_devnet(self) -> WalletSettings:
        """Fill unset endpoints from the network profile, then the devnet state file."""
        return self._with_network()._with_devnet_state()

    def _with_network(self) -> WalletSettings:
        given = {k: getattr(self, k) for k in (*PROFILE_FIELDS, "network", "networks_file")}
        filled, profile = apply_profile("WALLET_", given, PROFILE_FIELDS)
        if profile is None:
            return self
        return self.model_copy(update=filled)

    def send_policy(self) -> SendPolicy:
        """Fee caps, replacement and confirmations: the network profile's, else defaults."""
        return send_policy_for(self.network, self.networks_file)

    def phase_windows(self) -> PhaseWindows:
        """The margins new jobs' deadlines are sized with: the network profile's, else
        the defaults."""
        return phase_windows_for(self.network, self.networks_file)

    def chain_journal(self) -> Path | None:
        """The transaction journal's folder: with a network profile only."""
        return self.journal_dir if self.network else None

    def _with_devnet_state(self) -> WalletSettings:
        if self.devnet_state is None:
            return self
        state = load_state(self.devnet_state)
        coordinator = next((a for a in state.accounts if a.role == "coordinator"), None)
        fill = {
            "rpc_url": state.rpc_url,
            "chain_id": state.chain_id,
            "ipfs_api": state.ipfs_api,
            "coordinator_url": state.coordinator_url,
            "coordinator_address": coordinator.address if coordinator else None,
            "token_address": state.contracts.get("token"),
            "registry_address": state.contracts.get("registry"),
            "market_address": state.contracts.get("market"),
        }
        updates: dict[str, Any] = {
            k: v for k, v in fill.items() if getattr(self, k) is None and v is not None
        }
        node = state.ipfs_nodes.get("requester")
        if node is not None and not self.ipfs_peers and updates.get("ipfs_api") == node.api:
            # The devnet requester's own node: dial every other participant's.
            updates["ipfs_peers"] = tuple(
                n.swarm for name, n in state.ipfs_nodes.items() if name != "requester"
            )
        return self.model_copy(update=updates)

    def need(self, name: str) -> str:
        """A required setting, or a ConfigError naming the variable and flag to set."""
        value = getattr(self, name)
        if value is None:
            raise ConfigError(
                f"{name} is not set: set WALLET_{name.upper()} or pass --devnet STATE_FILE "
                "(or --network NAME)"
            )
        return str(value)

    def deployment(self) -> Deployment:
        rpc_chain = self.chain_id
        if rpc_chain is None:
            raise ConfigError("chain_id is not set: set WALLET_CHAIN_ID or pass --devnet")
        return Deployment.from_addresses(
            rpc_chain,
            {
                "token": self.need("token_address"),
                "registry": self.need("registry_address"),
                "market": self.need("market_address"),
            },
        )
