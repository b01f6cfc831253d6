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
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from contracts.settings import ChainSettings
from protocol.ids import Address, Wei, parse_address_list, to_wei

ENV_PREFIX = "PROVIDER_"
DEFAULT_MAX_LOCK_S = 7 * 24 * 3600

RuntimeName = Literal["bwrap", "docker", "podman", "process"]


class ProviderSettings(ChainSettings):
    """Everything a provider daemon needs to start; see the module docstring."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)
    WHAT: ClassVar[str] = "provider settings"

    keystore: Path
    coordinator_multiaddr: str | None = None
    work_dir: Path
    runtime: RuntimeName = "bwrap"
    unsafe_process_runtime: bool = False
    container_torch_image: str | None = Field(default=None, max_length=256)
    """docker/podman: the digest-pinned image (``repository@sha256:...``, with python3 and
    torch) torch jobs run in; the readiness probe runs it too."""
    container_oci_runtime: str | None = Field(default=None, max_length=64)
    """docker/podman: the OCI runtime to start containers with (e.g. ``runc``); unset: the
    engine's default."""
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
    """Jobs accepted beyond ``max_concurrent_jobs`` that wait for a free slot (a coordinator
    queues up to 4 at a busy provider, so every slot stays busy under load); one whose
    commit deadline comes too close while it waits is handed back unrun."""
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
    input_cache_bytes: int = Field(default=20 << 30, ge=0)
    """Verified job inputs kept by CID for later jobs (``<work_dir>/input-cache``), at most
    this many bytes; the least recently used go first. 0 keeps none."""
    max_input_entries: int = Field(default=100_000, ge=1)
    """Files and directories all of a job's inputs may hold together."""
    max_job_memory_bytes: int = Field(default=8 << 30, ge=16 << 20)
    max_job_pids: int = Field(default=512, ge=2)
    max_job_timeout_s: float = Field(default=24 * 3600.0, gt=0)
    """Longest wall time granted to any job, whatever its spec asks."""
    gpu_check_period_s: float = Field(default=60.0, ge=0, le=86400)
    """Seconds between GPU health checks (NVML, a test kernel on idle GPUs); 0: none."""
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

    @field_validator("coordinators", mode="before")
    @classmethod
    def _coordinator_list(cls, value: Any) -> Any:
        return parse_address_list(value)

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
    def journal_dir(self) -> Path | None:
        """Where transactions in flight are recorded (with a network profile)."""
        return self.work_dir / "txs" if self.network else None


load_settings = ProviderSettings.load
"""Settings from the environment with keyword overrides (None values ignored) on top."""
