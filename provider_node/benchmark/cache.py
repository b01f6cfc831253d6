"""The benchmark cache: one JSON file per fingerprint, so a driver or torch upgrade re-runs it."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from protocol.files import write_atomic
from provider_node.benchmark.model import (
    BENCHMARK_SCHEMA,
    BenchmarkResult,
    BenchmarkSettings,
    HostFingerprint,
)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpumarket"


def cache_path(cache_dir: Path, fingerprint: HostFingerprint) -> Path:
    return cache_dir / f"benchmark-{fingerprint.key()}.json"


def load_cached(
    cache_dir: Path, fingerprint: HostFingerprint, settings: BenchmarkSettings
) -> BenchmarkResult | None:
    """The cached result for exactly this fingerprint, these settings and this way of
    measuring (:data:`BENCHMARK_SCHEMA`), if there is one."""
    path = cache_path(cache_dir, fingerprint)
    try:
        result = BenchmarkResult.model_validate_json(path.read_bytes())
    except (OSError, ValidationError, ValueError):
        return None  # missing or unreadable: measure again
    if (
        result.schema_version != BENCHMARK_SCHEMA
        or result.fingerprint != fingerprint
        or result.settings != settings
    ):
        return None
    return result


def store(cache_dir: Path, result: BenchmarkResult) -> Path:
    """Write ``result`` atomically; a crash leaves the old file or none, never half of one."""
    path = cache_path(cache_dir, result.fingerprint)
    write_atomic(path, result.model_dump_json(indent=2).encode())
    return path
