"""Benchmark results: frozen, hashable, and serialisable to the JSON cache as they are."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from pydantic import BaseModel, ConfigDict

MATMUL_DTYPES = ("fp32", "tf32", "fp16", "bf16")
BENCHMARK_SCHEMA = 2
"""Bumped when the way figures are measured changes, so a cached result from before is
measured again (2: warm-up until stable and the best window, instead of a median)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HostFingerprint(_Frozen):
    """What a result depends on; two hosts with equal fingerprints compute bit-equal results.

    ``exact`` jobs are only paired across providers whose fingerprints are equal.
    """

    device_models: tuple[str, ...]
    driver: str | None = None
    cuda: str | None = None
    rocm: str | None = None
    torch: str

    def key(self) -> str:
        """A short stable digest, used to name the cache file."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(canonical).hexdigest()[:16]


class BenchmarkSettings(_Frozen):
    """How hard to measure: sizes are adapted up to these bounds, then timed repeatedly."""

    repeats: int = 7
    """Timed windows per figure; the fastest counts."""
    min_rep_s: float = 0.2
    """Each window loops the operation back to back until it has run at least this long."""
    max_warmup_s: float = 2.0
    """Warm-up windows run until two in a row agree within ``stable_rtol``, at most this long."""
    stable_rtol: float = 0.01
    min_matmul_n: int = 256
    max_matmul_n: int = 8192
    target_product_s: float = 0.005
    """Matrices grow (doubling) until one product takes at least this long."""
    slow_probe_s: float = 0.5
    """A dtype whose smallest product takes longer than this is skipped as too slow."""
    copy_bytes: int = 1 << 30
    h2d_bytes: int = 256 << 20

    @classmethod
    def for_cpu(cls) -> BenchmarkSettings:
        """Sized so the whole CPU benchmark takes under ten seconds on two cores."""
        return cls(
            repeats=15,
            min_rep_s=0.05,
            max_warmup_s=0.5,
            max_matmul_n=1024,
            target_product_s=0.05,
            copy_bytes=64 << 20,
            h2d_bytes=0,
        )

    @classmethod
    def tiny(cls) -> BenchmarkSettings:
        """For tests: real measurements on tiny sizes."""
        return cls(
            repeats=2,
            min_rep_s=0.01,
            max_warmup_s=0.02,
            min_matmul_n=64,
            max_matmul_n=128,
            target_product_s=0.001,
            copy_bytes=1 << 20,
            h2d_bytes=1 << 20,
        )


class MatmulFigure(_Frozen):
    """Dense matmul throughput in one dtype, or why it was not measured."""

    dtype: str
    tflops: float | None = None
    n: int | None = None
    peak_share: float | None = None
    skipped: str | None = None


class BandwidthFigure(_Frozen):
    """A copy bandwidth in GB/s (10^9 bytes), or why it was not measured."""

    gbs: float | None = None
    bytes: int | None = None
    peak_share: float | None = None
    skipped: str | None = None


class DeviceResult(_Frozen):
    """Everything measured on one device."""

    device: str
    backend: str
    name: str
    memory_bytes: int
    peak_model: str | None = None
    matmul: tuple[MatmulFigure, ...]
    memory_bandwidth: BandwidthFigure
    host_to_device: BandwidthFigure

    def tflops(self, dtype: str) -> float | None:
        return next((m.tflops for m in self.matmul if m.dtype == dtype), None)


class BenchmarkResult(_Frozen):
    """One benchmark run over the selected devices of a host."""

    schema_version: int = BENCHMARK_SCHEMA
    fingerprint: HostFingerprint
    settings: BenchmarkSettings
    devices: tuple[DeviceResult, ...]
    measured_at: datetime
    wall_s: float
