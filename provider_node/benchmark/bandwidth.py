"""Memory bandwidth on the device (a large copy) and from host to device (pinned on CUDA)."""

from __future__ import annotations

import torch

from provider_node.benchmark.devices import DeviceInfo
from provider_node.benchmark.model import BandwidthFigure, BenchmarkSettings
from provider_node.benchmark.timing import best_seconds_per_call, synchronizer


def _copy_size(info: DeviceInfo, wanted: int) -> int:
    # Two buffers, at most a quarter of the device's memory, in whole float32 elements.
    limit = info.memory_bytes // 8 if info.memory_bytes else wanted
    return max(4, min(wanted, limit) // 4 * 4)


def measure_device_copy(info: DeviceInfo, settings: BenchmarkSettings) -> BandwidthFigure:
    """Read plus write bandwidth of a device-to-device copy, in GB/s."""
    size = _copy_size(info, settings.copy_bytes)
    src = torch.ones(size // 4, dtype=torch.float32, device=info.device)
    dst = torch.empty_like(src)
    seconds = best_seconds_per_call(
        lambda: dst.copy_(src),
        synchronizer(info.device),
        repeats=settings.repeats,
        min_rep_s=settings.min_rep_s,
        max_warmup_s=settings.max_warmup_s,
        stable_rtol=settings.stable_rtol,
    ).seconds
    return BandwidthFigure(gbs=2 * size / seconds / 1e9, bytes=size)


def measure_host_to_device(info: DeviceInfo, settings: BenchmarkSettings) -> BandwidthFigure:
    """Bandwidth of copying host memory to the device, in GB/s (pinned host memory on CUDA)."""
    if info.backend == "cpu":
        return BandwidthFigure(skipped="the CPU has no separate device memory")
    if settings.h2d_bytes <= 0:
        return BandwidthFigure(skipped="disabled by settings")
    size = _copy_size(info, settings.h2d_bytes)
    pinned = info.backend in ("cuda", "rocm")
    host = torch.ones(size // 4, dtype=torch.float32, pin_memory=pinned)
    dev = torch.empty(size // 4, dtype=torch.float32, device=info.device)
    seconds = best_seconds_per_call(
        lambda: dev.copy_(host, non_blocking=pinned),
        synchronizer(info.device),
        repeats=settings.repeats,
        min_rep_s=settings.min_rep_s,
        max_warmup_s=settings.max_warmup_s,
        stable_rtol=settings.stable_rtol,
    ).seconds
    return BandwidthFigure(gbs=size / seconds / 1e9, bytes=size)
