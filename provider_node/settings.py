"""Settings of the provider daemon: one class, read from ``PROVIDER_*`` environment variables.

Create it once (:func:`load_settings`) and pass it down. CLI flags arrive as keyword
overrides on top of the environment. A missing or invalid setting raises
:class:`protocol.errors.ConfigError` naming the environment variable to set; the keystore
password is read from ``PROVIDER_PASSWORD_FILE`` (or ``PROVIDER_PASSWORD``) and held as a
``SecretStr`` that never prints.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.network import apply_profile, send_policy_for
from contracts.sender import SendPolicy
from protocol.errors import ConfigError, MessageError
from protocol.identity import read_password_file
from protocol.ids import Address, Wei, parse_address, parse_address_list, to_wei
from protocol.ipfs.peers import parse_gateways, parse_peers
from protocol.p2p.addresses import check_listen, parse_announce

ENV_PREFIX = "PROVIDER_"
PROFILE_FIELDS = {
    "rpc_url": "rpc_url",
    "chain_id": "chain_id",
    "market_address": "market",
    "registry_address": "registry_address",
    "token_address": "token",
    "ipfs_api": "ipfs_api",
}
"""Settings a network profile fills (settings field: profile attribute)."""
DEFAULT_MAX_LOCK_S = 7 * 24 * 3600

RuntimeName = Literal["bwrap", "docker", "process"]


class ProviderSettings(BaseSettings):
    """Everything a provider daemon needs to start; see the module docstring."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    network: str | None = None
    """A network profile (``contracts/network.py``) that fills the chain settings left
    unset: RPC URL, chain id, addresses, fee caps, confirmations."""
    networks_file: Path | None = None
    rpc_url: str
    chain_id: int | None = Field(default=None, gt=0)
    """The chain id the RPC must serve (unset: whatever it serves)."""
    market_address: str
    registry_address: str
    token_address: str
    keystore: Path
    password_file: Path | None = None
    password: SecretStr | None = None
    ipfs_api: str
    ipfs_peers: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated swarm multiaddrs (``.../p2p/<peer id>``) of other participants' IPFS
    nodes for this node's daemon to dial, so bitswap reaches what they hold."""
    ipfs_gateways: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated read-only HTTP gateways of nodes to stream files from directly
    (every byte still verified against the CID); the daemon's bitswap is the fallback."""
    coordinator_multiaddr: str | None = None
    work_dir: Path
    p2p_host: str = "127.0.0.1"
    p2p_port: int = Field(default=0, ge=0, le=65535)
    listen: str | None = None
    """The libp2p listen multiaddr (replaces ``p2p_host``/``p2p_port``), e.g.
    ``/ip4/0.0.0.0/tcp/4001`` to accept connections on every interface."""
    announce: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated multiaddrs others should dial (without ``/p2p/``), e.g. the public
    address a NAT forwards to the listen port; empty: the listen addresses."""
    runtime: RuntimeName = "bwrap"
    unsafe_process_runtime: bool = False
    stake: Decimal = Field(default=Decimal("100"), ge=0)
    """Token units to keep bonded; the daemon tops up to this at start."""
    price_per_gpu_hour: Decimal = Field(default=Decimal("1"), ge=0)
    """Token units per GPU-hour quoted in adverts: a seat of a job asking for g GPUs is billed
    g times this per hour."""
    price_per_cpu_hour: Decimal | None = Field(default=None, ge=0)
    """Token units per hour for a seat of a job asking for no GPU (``gpus: 0``); unset: the
    GPU-hour price."""
    max_concurrent_jobs: int = Field(default=1, ge=1, le=64)
    max_queued_jobs: int = Field(default=4, ge=0, le=64)
    """Jobs accepted beyond ``max_concurrent_jobs`` that wait for a free slot. Coordinators
    offer these only to jobs close to their assign deadline; one whose commit deadline comes
    too close while it waits is handed back unrun."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Serve Prometheus metrics on this port (0 picks a free one); unset turns them off."""
    metrics_host: str = "127.0.0.1"
    cpu_only: bool = False
    """Offer the CPU when no GPU is present."""
    advert_period_s: float = Field(default=5.0, gt=0.2, le=600)
    advert_ttl_s: int = Field(default=20, ge=5, le=3600)
    shutdown_grace_s: float = Field(default=30.0, ge=0, le=3600)
    """On SIGTERM, how long running jobs may finish before they are handed back."""
    output_retention_s: float = Field(default=7 * 24 * 3600.0, ge=0, le=365 * 24 * 3600.0)
    """How long revealed outputs stay pinned on this provider's IPFS node after the reveal
    (what the requester downloads them from); then they are unpinned."""
    max_input_bytes: int = Field(default=1 << 30, ge=1)
    max_input_entries: int = Field(default=100_000, ge=1)
    """Files and directories all of a job's inputs may hold together."""
    max_job_memory_bytes: int = Field(default=8 << 30, ge=16 << 20)
    max_job_pids: int = Field(default=512, ge=2)
    max_job_timeout_s: float = Field(default=24 * 3600.0, gt=0)
    """Longest wall time granted to any job, whatever its spec asks."""
    benchmark_cache: Path | None = None
    """Where the benchmark result is cached; defaults to ``<work_dir>/benchmark.json``."""

    # Warm sandboxes (bwrap only; provider_node/runtimes/warmpool.py): started while idle,
    # each used by exactly one job.
    warm_sandboxes: int = Field(default=1, ge=0, le=8)
    """Sandboxes kept started (torch imported) for the next jobs; 0 starts every job cold."""
    warm_sandbox_gpus: int = Field(default=1, ge=0, le=64)
    """On a GPU host, the GPUs each warm sandbox holds (jobs asking that many start warm)."""
    warm_sandbox_memory_bytes: int = Field(default=2 << 30, ge=256 << 20)
    """Memory one idle warm sandbox may use; the job's own limit replaces it at hand-off."""

    # Consent policy: the provider signs an Accept (which lets the market lock its stake)
    # only for offers inside these bounds; see provider_node/policy.py.
    coordinators: Annotated[tuple[Address, ...], NoDecode] = ()
    """Comma-separated coordinator addresses whose offers may be accepted; empty: the
    coordinator at ``coordinator_multiaddr`` only."""
    min_rate_per_gpu_hour: int | None = Field(default=None, ge=0)
    """Lowest ``ratePerHour`` accepted, in base units per GPU-hour of the seat (a seat of g
    GPUs needs g times this); unset: the advertised GPU-hour price."""
    min_rate_per_cpu_hour: int | None = Field(default=None, ge=0)
    """Lowest ``ratePerHour`` accepted for a seat of a job asking for no GPU, in base units;
    unset: the advertised CPU-hour price."""
    max_lock_s: int = Field(default=DEFAULT_MAX_LOCK_S, gt=0)
    """Longest time, in seconds, a job's settle deadline may lie ahead (the stake stays
    locked until then)."""
    max_locked_stake: int | None = Field(default=None, ge=0)
    """Most stake, in base units, locked in jobs at once; unset: all of it."""

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

    @field_validator("coordinators", mode="before")
    @classmethod
    def _coordinator_list(cls, value: Any) -> Any:
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
    def stake_wei(self) -> Wei:
        return to_wei(self.stake)

    @property
    def price_wei(self) -> Wei:
        return to_wei(self.price_per_gpu_hour)

    @property
    def cpu_price_wei(self) -> Wei:
        price = self.price_per_cpu_hour
        return self.price_wei if price is None else to_wei(price)

    @property
    def ready_file(self) -> Path:
        return self.work_dir / "provider.json"

    @property
    def benchmark_path(self) -> Path:
        return self.benchmark_cache or self.work_dir / "benchmark.json"

    @property
    def listen_multiaddr(self) -> str:
        return self.listen or f"/ip4/{self.p2p_host}/tcp/{self.p2p_port}"

    def send_policy(self) -> SendPolicy:
        """Fee caps, replacement and confirmations: the network profile's, else defaults."""
        return send_policy_for(self.network, self.networks_file)

    @property
    def journal_dir(self) -> Path | None:
        """Where transactions in flight are recorded (with a network profile)."""
        return self.work_dir / "txs" if self.network else None

    def keystore_password(self) -> SecretStr:
        """The keystore password, from the password file or the password variable."""
        if self.password_file is not None:
            return read_password_file(self.password_file, f"{ENV_PREFIX}PASSWORD_FILE")
        if self.password is not None:
            return self.password
        raise ConfigError(
            f"set {ENV_PREFIX}PASSWORD_FILE (or {ENV_PREFIX}PASSWORD) for the keystore"
        )


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(**overrides: Any) -> ProviderSettings:
    """Settings from the environment with ``overrides`` (None values ignored) on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    given, _ = apply_profile(ENV_PREFIX, given, PROFILE_FIELDS)
    try:
        return ProviderSettings(**given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "settings"
            if err["type"] == "missing":
                problems.append(f"{env_name(field)} is not set")
            else:
                problems.append(f"{env_name(field)}: {err['msg']}")
        raise ConfigError("invalid provider settings: " + "; ".join(problems)) from None
