"""What a runtime is handed (a prepared job) and what it hands back (a run result).

A prepared job is a work directory laid out as::

    <work_dir>/inputs/<name>/...   read-only inside the sandbox
    <work_dir>/outputs/            the only path the job may write

Inside a sandbox the work directory appears at :data:`JOB_ROOT`; the job's working directory
is the job root, so relative paths in a command mean the same thing in every runtime.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from protocol.errors import SandboxError

JOB_ROOT = "/job"
"""Where a sandbox mounts the job's work directory."""

INPUTS_DIR = "inputs"
OUTPUTS_DIR = "outputs"


@dataclass(frozen=True)
class RunLimits:
    """Resource bounds of one run. Every field is enforced, none is advisory."""

    wall_time_s: float
    memory_bytes: int
    max_pids: int
    max_output_bytes: int
    log_tail_bytes: int = 16 * 1024
    cpus: float | None = None
    """CPUs' worth of time per period (a cgroup quota); None: no quota. Enforced where the
    host offers a cpu controller; elsewhere the run's ``cpu_throttled`` stays None."""

    def __post_init__(self) -> None:
        if self.wall_time_s <= 0:
            raise SandboxError(f"wall time must be positive, got {self.wall_time_s}")
        if self.memory_bytes < 16 * 1024 * 1024:
            raise SandboxError(f"memory limit below 16 MiB: {self.memory_bytes}")
        if self.max_pids < 2:
            raise SandboxError(f"max_pids must be at least 2, got {self.max_pids}")
        if self.max_output_bytes < 0 or self.log_tail_bytes < 0:
            raise SandboxError("output and log bounds must not be negative")
        if self.cpus is not None and not 0 < self.cpus <= 4096:
            raise SandboxError(f"cpus must lie in (0, 4096], got {self.cpus}")


@dataclass(frozen=True)
class CommandEntrypoint:
    """Run ``argv`` as given, from the job root (a container's command, a shell tool)."""

    argv: tuple[str, ...]


@dataclass(frozen=True)
class TorchEntrypoint:
    """Run a Python script with torch available, through the deterministic launcher.

    ``script`` is relative to the job root, e.g. ``inputs/code/main.py``.
    """

    script: str
    args: tuple[str, ...] = ()


Entrypoint = CommandEntrypoint | TorchEntrypoint

OutputSink = Callable[[bytes], None]
"""Receives the job's combined stdout/stderr as it is produced, piece by piece.

Called from the supervising trio task, so it must return at once (buffer, never block or
send); it sees every byte the job writes, not only the kept tail.
"""


@dataclass(frozen=True)
class PreparedJob:
    """A job whose inputs are already on disk, ready for a runtime."""

    job_id: str
    work_dir: Path
    entrypoint: Entrypoint
    limits: RunLimits
    seed: int = 0
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    gpus: tuple[int, ...] = ()
    image: str | None = None
    """The OCI image for container runtimes; ignored by bwrap and process."""
    on_output: OutputSink | None = None
    """Live output hook; ``None`` keeps only the log tail of the result."""

    @property
    def inputs_dir(self) -> Path:
        return self.work_dir / INPUTS_DIR

    @property
    def outputs_dir(self) -> Path:
        return self.work_dir / OUTPUTS_DIR


class RunOutcome(enum.StrEnum):
    """How a run ended, from the provider's point of view."""

    OK = "ok"
    NONZERO_EXIT = "nonzero_exit"
    TIMEOUT = "timeout"
    OOM = "oom"
    PIDS_LIMIT = "pids_limit"
    OUTPUT_TOO_LARGE = "output_too_large"
    OUTPUT_REFUSED = "output_refused"
    """Outputs hold a special file or a link that points outside them."""
    SANDBOX_ERROR = "sandbox_error"
    KILLED = "killed"


@dataclass(frozen=True)
class RunResult:
    """The facts of one finished run.

    ``exit_code`` is the job's exit status (``None`` when it never started or was killed
    by a signal the runtime cannot see through); ``detail`` says why for any outcome but ok.
    """

    outcome: RunOutcome
    exit_code: int | None
    duration_s: float
    log_tail: str
    output_bytes: int = 0
    detail: str = ""
    cpu_throttled: int | None = None
    """Periods the CPU quota held the job back; None when no quota was enforced."""

    @property
    def ok(self) -> bool:
        return self.outcome is RunOutcome.OK
