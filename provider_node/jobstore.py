"""Crash-safe records of the jobs a provider holds, one small JSON file per job.

A record is written (temporary file, fsync, rename, fsync of the directory) *before* each
side effect it enables: the assignment before any work, the result CID, runtime and salt before
the commitment is sent. So a provider restarted at any point still knows what it promised and
can reveal it. Layout::

    <work_dir>/jobs/<job id hex>/record.json   this module
    <work_dir>/jobs/<job id hex>/run/          the job's work dir (inputs/, outputs/)

The run dir is removed once the record reaches a terminal phase; the record is kept.
"""

from __future__ import annotations

import enum
import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from protocol.errors import GpuMarketError
from protocol.fields import Bytes32, JobIdField, Signature65
from protocol.files import remove_tree, write_atomic
from protocol.ids import Address, Cid, JobId, PeerId
from protocol.messages import Assignment
from protocol.signing import SignedMessage

MAX_RECORD_BYTES = 1 << 20


class StoreError(GpuMarketError):
    """A job record cannot be read or written."""


class LocalPhase(enum.StrEnum):
    """Where a job stands on this provider; later phases never go back."""

    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPUTED = "computed"
    """Result CID, runtime and salt are on disk; the commitment may or may not have been
    sent."""
    COMMITTED = "committed"
    """The coordinator took the commitment (``receipt_signature`` holds its receipt, if it
    gave one)."""
    REVEALED = "revealed"
    FAILED = "failed"
    HANDED_BACK = "handed_back"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (
            LocalPhase.REVEALED,
            LocalPhase.FAILED,
            LocalPhase.HANDED_BACK,
            LocalPhase.CANCELLED,
        )


class LocalJob(BaseModel):
    """Everything needed to resume a job after a restart, and to commit and reveal it on
    chain without the coordinator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: JobIdField
    phase: LocalPhase
    assignment: SignedMessage
    """The coordinator's signed Assignment, exactly as received."""
    coordinator_peer: PeerId
    commit_deadline: int | None = None
    """The seat's commit deadline on chain (``assignedAt + commitWindow``)."""
    commit_window: int | None = None
    result_cid: Cid | None = None
    runtime_ms: int | None = None
    salt: Bytes32 | None = None
    exit_class: str | None = None
    """Set when the result is the canonical failure output (see failure_output.py)."""
    commit_hash: Bytes32 | None = None
    commit_signature: Signature65 | None = None
    receipt_signature: Signature65 | None = None
    """The coordinator's CommitReceipt for ``commit_hash``."""
    committed_on_chain: bool = False
    revealed_on_chain: bool = False
    chain_done: bool = False
    """Nothing is left to do on chain for this job (settled, closed, or given up)."""
    detail: str = ""
    updated_at: float = 0.0

    @property
    def assignment_body(self) -> Assignment:
        body = self.assignment.body
        assert isinstance(body, Assignment), "a job record holds an Assignment"
        return body

    @property
    def seat(self) -> int:
        """This provider's seat index in the job (from the Assignment)."""
        return self.assignment_body.seat

    @property
    def coordinator(self) -> Address:
        return self.assignment_body.coordinator

    def advance(self, phase: LocalPhase, **changes: Any) -> LocalJob:
        return self.model_copy(update={"phase": phase, "updated_at": time.time(), **changes})


class JobStore:
    """Job records under ``<root>/jobs``."""

    def __init__(self, root: Path) -> None:
        self.root = root / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def job_dir(self, job_id: JobId) -> Path:
        return self.root / job_id.hex()

    def run_dir(self, job_id: JobId) -> Path:
        return self.job_dir(job_id) / "run"

    def remove_run(self, job_id: JobId) -> bool:
        """Delete the job's run dir (its record stays); True when there was one. Blocking."""
        run = self.run_dir(job_id)
        if not run.exists():
            return False
        remove_tree(run)
        return True

    def _path(self, job_id: JobId) -> Path:
        return self.job_dir(job_id) / "record.json"

    def save(self, record: LocalJob) -> None:
        data = record.model_dump_json().encode()
        try:
            write_atomic(self._path(record.job_id), data)
        except OSError as exc:
            raise StoreError(f"cannot save job record {record.job_id.hex()}: {exc}") from exc

    def update(self, job_id: JobId, phase: LocalPhase | None = None, **changes: Any) -> LocalJob:
        """Apply ``changes`` (and ``phase``) to the stored record and save it; returns it.

        Synchronous, so no other task of the event loop writes between the read and the
        write: the worker and the chain fallback both update one record this way.
        """
        record = self.load(job_id)
        if record is None:
            raise StoreError(f"no job record {job_id.hex()} to update")
        if phase is not None:
            record = record.advance(phase, **changes)
        else:
            record = record.model_copy(update={"updated_at": time.time(), **changes})
        self.save(record)
        return record

    def load(self, job_id: JobId) -> LocalJob | None:
        path = self._path(job_id)
        try:
            data = path.read_bytes()[: MAX_RECORD_BYTES + 1]
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        if len(data) > MAX_RECORD_BYTES:
            raise StoreError(f"{path} is too large for a job record")
        try:
            return LocalJob.model_validate_json(data)
        except ValidationError as exc:
            raise StoreError(f"{path} is not a valid job record: {exc}") from exc

    def all(self) -> list[LocalJob]:
        """Every readable record (unreadable ones are skipped, not fatal)."""
        records = []
        for entry in sorted(self.root.iterdir()):
            try:
                job_id = JobId(bytes.fromhex(entry.name))
            except ValueError:
                continue
            if len(job_id) != 32:
                continue
            try:
                record = self.load(job_id)
            except StoreError:
                continue
            if record is not None:
                records.append(record)
        return records


class SequenceFile:
    """Advert sequence numbers that rise across restarts.

    The first number is the larger of the last persisted one plus one and the current
    time in milliseconds, so even a lost file does not make a restarted provider reuse
    numbers that receivers already saw.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last = max(self._read(), int(time.time() * 1000) - 1)

    def _read(self) -> int:
        try:
            return int(json.loads(self.path.read_text())["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return -1

    def next(self) -> int:
        self._last += 1
        write_atomic(self.path, json.dumps({"seq": self._last}).encode())
        return self._last
