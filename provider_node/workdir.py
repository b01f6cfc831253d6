"""A job's work directory: inputs fetched by CID (verified, size-capped), outputs hashed.

Layout, as the runtimes expect it::

    <run_dir>/inputs/<name>/   one directory per input, made read-only
    <run_dir>/outputs/         empty before the run; the only place a job writes

An input whose CID is a single file appears as ``inputs/<name>/<name>``, so every input is
a directory and a job finds ``inputs/<name>/`` whatever was uploaded.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import trio

from protocol.errors import ContentError, SpecError
from protocol.ids import Cid
from protocol.ipfs.errors import TooManyEntries
from protocol.ipfs.fetch import MAX_ENTRIES
from protocol.ipfs.local import path_ref
from protocol.ipfs.store import ContentStore
from provider_node.inputcache import InputCache
from provider_node.jobplan import JobPlan
from provider_node.runtimes.model import (
    INPUTS_DIR,
    OUTPUTS_DIR,
    CommandEntrypoint,
    Entrypoint,
    TorchEntrypoint,
)

log = logging.getLogger(__name__)


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _make_read_only(path: Path) -> None:
    for root, dirs, files in os.walk(path):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o555)
    os.chmod(path, 0o555)


INPUT_FROM_CACHE = "cache"
INPUT_FETCHED = "fetched"
INPUT_LOG = "input %s %s: %s, %d bytes in %.3f s"
"""Logged once per input of a job: its name, CID, where it came from (``cache`` when the
provider's input cache held it, ``fetched`` when it was downloaded), its size and the
seconds it took to place (the download, or the cache's re-hash and link)."""


async def fetch_inputs(
    store: ContentStore,
    input_cids: dict[str, Cid],
    run_dir: Path,
    max_bytes: int,
    *,
    max_entries: int = MAX_ENTRIES,
    deadline_s: float | None = None,
    cache: InputCache | None = None,
) -> int:
    """Fetch every input under ``run_dir/inputs``; returns the bytes fetched.

    ``max_bytes`` bounds all inputs' bytes together and ``max_entries`` all their files and
    directories together (a few blocks can name one subtree many times); ``deadline_s``
    (seconds from now) bounds the whole download. Raises ``ContentError`` for content that
    is missing, too large, too many entries, too slow or does not match its CID. With a
    ``cache``, an input cached earlier is taken from it (hashed again first) and one
    fetched now is offered to it; the same limits apply either way.
    """
    inputs = run_dir / INPUTS_DIR
    inputs.mkdir(parents=True)
    (run_dir / OUTPUTS_DIR).mkdir()
    with trio.move_on_after(deadline_s if deadline_s is not None else math.inf) as scope:
        used = await _fetch_all(store, input_cids, inputs, max_bytes, max_entries, cache)
    if scope.cancelled_caught:
        raise ContentError(
            f"inputs did not arrive within {deadline_s:.0f} s, the time left before the "
            "commit deadline"
        )
    return used


async def _fetch_all(
    store: ContentStore,
    input_cids: dict[str, Cid],
    inputs: Path,
    max_bytes: int,
    max_entries: int,
    cache: InputCache | None,
) -> int:
    used = 0
    entries = 0
    for name, cid in sorted(input_cids.items()):
        staging = inputs / f".{name}.fetch"
        started = time.monotonic()
        source = INPUT_FROM_CACHE
        if cache is None or not await cache.take(cid, staging):
            source = INPUT_FETCHED
            await store.get(
                cid, staging, max_size=max_bytes - used, max_entries=max(1, max_entries - entries)
            )
        placed = time.monotonic() - started
        if cache is not None and source == INPUT_FETCHED:
            await cache.keep(cid, staging)
        counted = await trio.to_thread.run_sync(_count_entries, staging)
        if counted > max(1, max_entries - entries):  # a cached input counts as a fetched one
            raise TooManyEntries(cid, max_entries)
        entries += counted
        target = inputs / name
        if staging.is_dir():
            staging.rename(target)
        else:
            target.mkdir()
            staging.rename(target / name)
        size = await trio.to_thread.run_sync(_du, target)
        used += size
        log.info(INPUT_LOG, name, cid, source, size, placed)
        if used > max_bytes:
            raise ContentError(f"inputs exceed the provider's limit of {max_bytes} bytes")
        await trio.to_thread.run_sync(_make_read_only, target)
    return used


def _count_entries(path: Path) -> int:
    return 1 + sum(1 for _ in path.rglob("*")) if path.is_dir() else 1


def entrypoint_for(plan: JobPlan, run_dir: Path) -> Entrypoint:
    """The runtime entrypoint of ``plan`` once its inputs are on disk under ``run_dir``."""
    if plan.runtime == "container":
        return CommandEntrypoint(plan.command)
    script = plan.entrypoint or ""
    if Path(script).is_absolute() or ".." in Path(script).parts:
        raise SpecError("runtime.entrypoint", "must be a relative path inside an input")
    if script.startswith(f"{INPUTS_DIR}/"):
        candidates = [script]
    else:
        inputs = run_dir / INPUTS_DIR
        names = sorted(p.name for p in inputs.iterdir() if not p.name.startswith("."))
        ordered = [n for n in plan.inputs if n in names] + [
            n for n in names if n not in plan.inputs
        ]
        candidates = [f"{INPUTS_DIR}/{name}/{script}" for name in ordered]
    for candidate in candidates:
        if (run_dir / candidate).is_file():
            return TorchEntrypoint(candidate, plan.args)
    raise SpecError("runtime.entrypoint", f"{script!r} is not a file in any input")


def outputs_cid(run_dir: Path) -> Cid:
    """The CID ``outputs/`` will have in IPFS, computed locally without adding it."""
    return path_ref(run_dir / OUTPUTS_DIR).text
