"""The wallet's local record of each job it submitted: facts only this machine knows.

The chain and the coordinator know what a job cost; only the wallet knows how many bytes it
uploaded (the spec and the local inputs it added) and downloaded (the result it fetched).
One small JSON file per job lives in ``jobs/`` beside the keystore directory. Jobs submitted
before records existed, or from another machine, have none: their byte counts are unknown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocol.files import write_atomic
from protocol.ids import JobId, job_id_hex
from wallet.settings import WalletSettings


def records_dir(settings: WalletSettings) -> Path:
    return settings.keystore_dir.parent / "jobs"


def _path(settings: WalletSettings, job_id: JobId) -> Path:
    return records_dir(settings) / f"{job_id_hex(job_id)}.json"


def read(settings: WalletSettings, job_id: JobId) -> dict[str, Any]:
    """The job's record, or ``{}`` when this wallet kept none (or cannot read it)."""
    try:
        data = json.loads(_path(settings, job_id).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update(settings: WalletSettings, job_id: JobId, **fields: Any) -> None:
    """Merge ``fields`` into the job's record (written whole, then renamed into place)."""
    data = read(settings, job_id) | {"job_id": job_id_hex(job_id)} | fields
    write_atomic(_path(settings, job_id), json.dumps(data, sort_keys=True).encode())


def add_bytes(settings: WalletSettings, job_id: JobId, field: str, amount: int) -> None:
    """Add ``amount`` to a byte counter of the job's record (results may be fetched twice)."""
    update(settings, job_id, **{field: int(read(settings, job_id).get(field, 0)) + amount})


def held_elsewhere(settings: WalletSettings, job_id: JobId) -> set[str]:
    """CIDs that another job of this wallet still holds pinned (uploaded, not released)."""
    own = f"{job_id_hex(job_id)}.json"
    held: set[str] = set()
    try:
        paths = [p for p in records_dir(settings).glob("*.json") if p.name != own]
    except OSError:
        return held
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "released_at" not in data:
            held.update(str(c) for c in data.get("pinned", ()) if isinstance(c, str))
    return held
