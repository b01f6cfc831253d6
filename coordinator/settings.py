"""Settings of the coordinator: one class, read from ``COORDINATOR_*`` environment variables.

Create it once (:func:`load_settings`) and pass it down; CLI flags arrive as keyword
overrides. A missing or invalid setting raises :class:`protocol.errors.ConfigError` naming
the environment variable to set. The key comes from ``COORDINATOR_KEYSTORE`` with
``COORDINATOR_PASSWORD_FILE`` (or ``COORDINATOR_PASSWORD``); in-process tests may pass
``COORDINATOR_PRIVATE_KEY`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.network import apply_profile, send_policy_for
from contracts.sender import SendPolicy
from protocol.errors import ConfigError, MessageError
from protocol.identity import Identity, load_keystore, read_password_file
from protocol.ids import Address, parse_address, parse_address_list
from protocol.ipfs.peers import parse_gateways, parse_peers
from protocol.p2p.addresses import check_listen, parse_announce

ENV_PREFIX = "COORDINATOR_"
READY_FILE = "coordinator.json"
PROFILE_FIELDS = {
    "rpc_url": "rpc_url",
    "chain_id": "chain_id",
    "market_address": "market",
    "registry_address": "registry_address",
    "token_address": "token",
    "start_block": "start_block",
    "reorg_margin": "reorg_margin",
    "ipfs_api": "ipfs_api",
}
"""Settings a network profile fills (settings field: profile attribute)."""


class CoordinatorSettings(BaseSettings):
    """Everything a coordinator needs to start; see the module docstring."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    network: str | None = None
    """A network profile (``contracts/network.py``) that fills the chain settings left
    unset: RPC URL, chain id, addresses, start block, reorg margin, fee caps."""
    networks_file: Path | None = None
    rpc_url: str
    chain_id: int | None = Field(default=None, gt=0)
    """The chain id the RPC must serve (unset: whatever it serves)."""
    market_address: str
    registry_address: str
    token_address: str
    keystore: Path | None = None
    password_file: Path | None = None
    password: SecretStr | None = None
    private_key: SecretStr | None = None
    ipfs_api: str
    ipfs_peers: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated swarm multiaddrs (``.../p2p/<peer id>``) of other participants' IPFS
    nodes for this node's daemon to dial, so bitswap reaches what they hold."""
    ipfs_gateways: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated read-only HTTP gateways of nodes to stream files from directly
    (every byte still verified against the CID); the daemon's bitswap is the fallback."""
    data_dir: Path
    db_url: str | None = None
    """SQLAlchemy URL; a SQLite file in the data dir when unset."""
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535)
    p2p_host: str = "127.0.0.1"
    p2p_port: int = Field(default=0, ge=0, le=65535)
    listen: str | None = None
    """The libp2p listen multiaddr (replaces ``p2p_host``/``p2p_port``), e.g.
    ``/ip4/0.0.0.0/tcp/4001`` to accept connections on every interface."""
    announce: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated multiaddrs others should dial (without ``/p2p/``), e.g. the public
    address a NAT forwards to the listen port; empty: the listen addresses."""
    reorg_margin: int = Field(default=0, ge=0, le=1000)
    """Blocks behind the head the chain watcher stays (0 on an automining devnet)."""
    start_block: int = Field(default=0, ge=0)
    """Where the chain watcher starts on an empty store (the market's deployment block)."""
    poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    provider_ttl_s: float = Field(default=30.0, gt=0, le=3600)
    """A provider silent for this long leaves the book."""
    stake_refresh_s: float = Field(default=15.0, gt=0, le=3600)
    settle_window_s: float = Field(default=0.1, ge=0, le=60)
    """Jobs ready to settle within this window go into one settleBatch."""
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    reveal_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    exploration_share: float = Field(default=0.1, ge=0, le=0.5)
    default_duration_s: int = Field(default=600, ge=1)
    challenge_n: int = Field(default=256, ge=16, le=4096)
    challenges: bool = True
    """Send benchmark challenges to newly seen providers."""
    challenge_queue: int = Field(default=1000, ge=1, le=1_000_000)
    """Providers waiting for a benchmark challenge, at most (one entry each)."""
    max_providers: int = Field(default=10_000, ge=1, le=1_000_000)
    """The provider book's size; new providers beyond it are refused."""
    admission_lookup_s: float = Field(default=10.0, gt=0, le=3600)
    """An unknown advertiser's registration and stake are read on chain at most this often."""
    admission_queue: int = Field(default=1024, ge=1, le=1_000_000)
    """Unknown advertisers waiting for that chain read, at most."""
    admission_lookups_per_s: float = Field(default=20.0, gt=0, le=10_000)
    """Chain reads for unknown advertisers, at most, per second."""
    history_sample_s: float = Field(default=10.0, ge=0.5, le=600)
    """How often the live book is sampled into the hourly history (offered seconds, prices)."""
    history_flush_s: float = Field(default=60.0, ge=0.5, le=3600)
    """How often those samples are written to the store (a crash loses at most this much)."""
    trusted_coordinators: Annotated[tuple[Address, ...], NoDecode] = ()
    """Comma-separated coordinator addresses whose settlements seed the reputation of a
    provider this coordinator has no record of (its own always do)."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        return None if value is None else check_listen(value)

    @field_validator("announce", mode="before")
    @classmethod
    def _announce(cls, value: Any) -> Any:
        return parse_announce(value)

    @field_validator("ipfs_peers", mode="before")
    @classmethod
    def _ipfs_peers(cls, value: Any) -> Any:
        return parse_peers(value)

    @field_validator("ipfs_gateways", mode="before")
    @classmethod
    def _ipfs_gateways(cls, value: Any) -> Any:
        return parse_gateways(value)

    @field_validator("trusted_coordinators", mode="before")
    @classmethod
    def _address_list(cls, value: Any) -> Any:
        return parse_address_list(value)

    @field_validator("market_address", "registry_address", "token_address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return parse_address(value)
        except MessageError as exc:
            raise ValueError(str(exc)) from exc

    @property
    def market(self) -> Address:
        return Address(self.market_address)

    @property
    def registry(self) -> Address:
        return Address(self.registry_address)

    @property
    def token(self) -> Address:
        return Address(self.token_address)

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'coordinator.sqlite').resolve()}"

    @property
    def ready_file(self) -> Path:
        return self.data_dir / READY_FILE

    @property
    def listen_multiaddr(self) -> str:
        return self.listen or f"/ip4/{self.p2p_host}/tcp/{self.p2p_port}"

    def send_policy(self) -> SendPolicy:
        """Fee caps, replacement and confirmations: the network profile's, else defaults."""
        return send_policy_for(self.network, self.networks_file)

    @property
    def journal_dir(self) -> Path | None:
        """Where transactions in flight are recorded (with a network profile)."""
        return self.data_dir / "txs" if self.network else None

    def identity(self) -> Identity:
        """The coordinator's key: from ``PRIVATE_KEY``, else the keystore and its password."""
        if self.private_key is not None:
            return Identity.from_private_key(self.private_key.get_secret_value())
        if self.keystore is None:
            raise ConfigError(f"set {ENV_PREFIX}KEYSTORE (and {ENV_PREFIX}PASSWORD_FILE)")
        return load_keystore(self.keystore, self._password())

    def _password(self) -> SecretStr:
        if self.password_file is not None:
            return read_password_file(self.password_file, f"{ENV_PREFIX}PASSWORD_FILE")
        if self.password is not None:
            return self.password
        raise ConfigError(f"set {ENV_PREFIX}PASSWORD_FILE (or {ENV_PREFIX}PASSWORD)")


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(**overrides: Any) -> CoordinatorSettings:
    """Settings from the environment with ``overrides`` (None values ignored) on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    given, _ = apply_profile(ENV_PREFIX, given, PROFILE_FIELDS)
    try:
        return CoordinatorSettings(**given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "settings"
            if err["type"] == "missing":
                problems.append(f"{env_name(field)} is not set")
            else:
                problems.append(f"{env_name(field)}: {err['msg']}")
        raise ConfigError("invalid coordinator settings: " + "; ".join(problems)) from None
