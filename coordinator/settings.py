"""Settings of the coordinator: one class, read from ``COORDINATOR_*`` environment variables.

Create it once (:func:`load_settings`) and pass it down; CLI flags arrive as keyword
overrides. A missing or invalid setting raises :class:`protocol.errors.ConfigError` naming
the environment variable to set (the shared part: :class:`contracts.settings.ChainSettings`).
The key comes from ``COORDINATOR_KEYSTORE`` with
``COORDINATOR_PASSWORD_FILE`` (or ``COORDINATOR_PASSWORD``); in-process tests may pass
``COORDINATOR_PRIVATE_KEY`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from contracts.settings import ChainSettings, IpfsPeers
from protocol.errors import ConfigError
from protocol.identity import Identity, load_keystore
from protocol.ids import Address, parse_address_list

ENV_PREFIX = "COORDINATOR_"
READY_FILE = "coordinator.json"


class CoordinatorSettings(ChainSettings):
    """Everything a coordinator needs to start; see the module docstring."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)
    PROFILE_FIELDS: ClassVar[dict[str, str]] = {
        **ChainSettings.PROFILE_FIELDS,
        "start_block": "start_block",
        "reorg_margin": "reorg_margin",
    }
    WHAT: ClassVar[str] = "coordinator settings"

    keystore: Path | None = None
    private_key: SecretStr | None = None
    data_dir: Path
    db_url: str | None = None
    """SQLAlchemy URL; a SQLite file in the data dir when unset."""
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535)
    reorg_margin: int = Field(default=0, ge=0, le=1000)
    """Blocks behind the head the chain watcher stays (0 on an automining devnet)."""
    start_block: int = Field(default=0, ge=0)
    """Where the chain watcher starts on an empty store (the market's deployment block)."""
    poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    provider_ttl_s: float = Field(default=30.0, gt=0, le=3600)
    """A provider silent for this long leaves the book."""
    stake_refresh_s: float = Field(default=15.0, gt=0, le=3600)
    settle_window_s: float = Field(default=0.0, ge=0, le=60)
    """How long a settlement waits for others to share its settleBatch. Settlements that
    arrive while a batch is being mined go into the next one anyway, so 0 (send at once)
    still batches under load; a longer window saves gas when jobs end a few at a time."""
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    reveal_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    exploration_share: float = Field(default=0.1, ge=0, le=0.5)
    default_duration_s: int = Field(default=600, ge=1)
    challenge_n: int = Field(default=4096, ge=16, le=16384)
    """m of every benchmark challenge (k is 4096); above 64 a multiple of 64."""
    challenge_target_s: float = Field(default=1.5, gt=0, le=10)
    """Compute per benchmark challenge at the claimed speed."""
    challenges: bool = True
    """Send benchmark challenges to providers (when they join, change their claims, and at
    random times)."""
    challenge_interval_s: float = Field(default=6 * 3600.0, ge=0, le=30 * 86400)
    """Mean gap between a provider's random re-challenges (exponential); 0: none."""
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
    result_retention_s: float = Field(default=7 * 24 * 3600.0, ge=0, le=365 * 24 * 3600.0)
    """How long this coordinator's IPFS node keeps each settled job's result pinned (fetched
    from the providers' nodes), so the requester finds it after the providers dropped it;
    0: never pinned here."""
    ipfs_announce: IpfsPeers = ()
    """Comma-separated swarm multiaddrs (``.../p2p/<peer id>``) of this coordinator's IPFS
    node that requesters' nodes can dial (its public, port-forwarded address); empty: the
    addresses the node itself reports. ``GET /health`` gives them to wallets."""
    result_max_bytes: int = Field(default=1 << 30, ge=1, le=1 << 40)
    """The largest result this coordinator's node fetches and pins; a larger one is left to
    the providers (and logged)."""
    trusted_coordinators: Annotated[tuple[Address, ...], NoDecode] = ()
    """Comma-separated coordinator addresses whose settlements seed the reputation of a
    provider this coordinator has no record of (its own always do)."""

    @field_validator("trusted_coordinators", mode="before")
    @classmethod
    def _address_list(cls, value: Any) -> Any:
        return parse_address_list(value)

    @field_validator("challenge_n")
    @classmethod
    def _whole_leaves(cls, value: int) -> int:
        if value > 64 and value % 64:
            raise ValueError(f"challenge_n={value}: above 64 it must be a multiple of 64")
        return value

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'coordinator.sqlite').resolve()}"

    @property
    def ready_file(self) -> Path:
        return self.data_dir / READY_FILE

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
        return load_keystore(self.keystore, self.keystore_password())


load_settings = CoordinatorSettings.load
"""Settings from the environment with keyword overrides (None values ignored) on top."""
