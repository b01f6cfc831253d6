"""Run the benchmark over selected devices, or return the cached result for this fingerprint."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from provider_node.benchmark.bandwidth import measure_device_copy, measure_host_to_device
from provider_node.benchmark.cache import default_cache_dir, load_cached, store
from provider_node.benchmark.devices import DeviceInfo, fingerprint_of, select_devices
from provider_node.benchmark.matmul import measure_matmul
from provider_node.benchmark.model import (
    MATMUL_DTYPES,
    BandwidthFigure,
    BenchmarkResult,
    BenchmarkSettings,
    DeviceResult,
    HostFingerprint,
    MatmulFigure,
)
from provider_node.benchmark.peaks import peak_model, share

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchmarkOutcome:
    result: BenchmarkResult
    cached: bool
    cache_file: Path | None


def _failed(exc: Exception) -> str:
    return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def benchmark_device(
    info: DeviceInfo, settings: BenchmarkSettings, progress: Progress
) -> DeviceResult:
    """Measure one device. A dtype the backend rejects is recorded as skipped, not raised."""
    model = peak_model(info.name)
    figures = []
    for dtype in MATMUL_DTYPES:
        progress(f"{info.device}: matmul {dtype}")
        try:
            figure = measure_matmul(info, dtype, settings)
        except (RuntimeError, TypeError, NotImplementedError) as exc:
            figure = MatmulFigure(dtype=dtype, skipped=_failed(exc))
        share_of_peak = share(figure.tflops, model, dtype)
        figures.append(figure.model_copy(update={"peak_share": share_of_peak}))
    progress(f"{info.device}: memory bandwidth")
    try:
        copy = measure_device_copy(info, settings)
    except RuntimeError as exc:
        copy = BandwidthFigure(skipped=_failed(exc))
    copy = copy.model_copy(update={"peak_share": share(copy.gbs, model, "mem_bw_gbs")})
    progress(f"{info.device}: host-to-device bandwidth")
    try:
        h2d = measure_host_to_device(info, settings)
    except RuntimeError as exc:
        h2d = BandwidthFigure(skipped=_failed(exc))
    return DeviceResult(
        device=info.device,
        backend=info.backend,
        name=info.name,
        memory_bytes=info.memory_bytes,
        peak_model=model,
        matmul=tuple(figures),
        memory_bandwidth=copy,
        host_to_device=h2d,
    )


def default_settings(devices: Sequence[DeviceInfo]) -> BenchmarkSettings:
    if all(d.backend == "cpu" for d in devices):
        return BenchmarkSettings.for_cpu()
    return BenchmarkSettings()


def run_benchmark(
    *,
    selection: Sequence[str] | None = None,
    settings: BenchmarkSettings | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    fingerprint: HostFingerprint | None = None,
    progress: Progress | None = None,
) -> BenchmarkOutcome:
    """Benchmark the selected devices (see :func:`select_devices`), through the cache.

    A cached result is used only when its fingerprint and settings equal this run's; a fresh
    result always replaces the cache file. ``fingerprint`` overrides the detected one.
    """
    report = progress or (lambda _message: None)
    devices = select_devices(selection)
    settings = settings or default_settings(devices)
    fingerprint = fingerprint or fingerprint_of(devices)
    directory = cache_dir or default_cache_dir()
    if use_cache:
        cached = load_cached(directory, fingerprint, settings)
        if cached is not None:
            return BenchmarkOutcome(cached, True, None)
    started = time.monotonic()
    with torch.inference_mode():
        results = tuple(benchmark_device(info, settings, report) for info in devices)
    result = BenchmarkResult(
        fingerprint=fingerprint,
        settings=settings,
        devices=results,
        measured_at=datetime.now(UTC),
        wall_s=time.monotonic() - started,
    )
    path = store(directory, result)
    return BenchmarkOutcome(result, False, path)
