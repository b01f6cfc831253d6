"""What this provider offers, derived from its benchmark: GPUs, performance, fingerprint.

The benchmark result (measured or cached per hardware fingerprint) becomes the parts of an
advert that do not change while the daemon runs. A host without a GPU offers its CPU only
when asked to (``PROVIDER_CPU_ONLY``); otherwise starting is refused with that advice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import ConfigError
from protocol.messages import Benchmark, Fingerprint, GpuInfo
from protocol.messages.advert import DTYPES, Backend
from provider_node.benchmark import BenchmarkResult


@dataclass(frozen=True)
class HostOffer:
    """The fixed part of this provider's adverts."""

    gpus: tuple[GpuInfo, ...]
    gpu_indices: tuple[int, ...]
    benchmark: Benchmark
    fingerprint: Fingerprint
    device: str
    """Where challenges run: ``cuda:0``, ``mps`` or ``cpu``."""


def offer_from_benchmark(
    result: BenchmarkResult,
    *,
    cpu_only: bool,
    capabilities: Mapping[int, str] | None = None,
    driver_cuda: str | None = None,
) -> HostOffer:
    """The offer of a benchmarked host (GPUs are offered when present, else the CPU).
    ``capabilities`` (compute capability per CUDA index) and ``driver_cuda`` (the newest CUDA
    the driver supports) are read live, not cached with the benchmark."""
    capabilities = capabilities or {}
    gpu_results = [d for d in result.devices if d.backend != "cpu"]
    if not gpu_results and not cpu_only:
        raise ConfigError(
            "no GPU found on this host; set PROVIDER_CPU_ONLY=true to offer the CPU instead"
        )
    measured = gpu_results or [d for d in result.devices if d.backend == "cpu"]
    if not measured:
        raise ConfigError("the benchmark measured no device")
    # Adverts quote per-GPU figures; the slowest device is what a job may land on.
    tflops: dict[str, float] = {}
    for dtype in DTYPES:
        values = [d.tflops(dtype) for d in measured]
        if values and all(v is not None and v > 0 for v in values):
            tflops[dtype] = min(v for v in values if v is not None)
    bandwidths = [d.memory_bandwidth.gbs for d in measured if d.memory_bandwidth.gbs]
    h2d = [d.host_to_device.gbs for d in measured if d.host_to_device.gbs]
    first = measured[0]
    backend: Backend = first.backend if first.backend in ("cuda", "rocm", "mps") else "cpu"  # type: ignore[assignment]
    fp = result.fingerprint
    fingerprint = Fingerprint(
        backend=backend,
        gpu_model=first.name[:128],
        driver=fp.driver[:64] if fp.driver else None,
        cuda=fp.cuda,
        rocm=fp.rocm,
        torch=fp.torch[:64],
        driver_cuda=driver_cuda if backend == "cuda" else None,
    )
    indices = tuple(_index(d.device) for d in gpu_results)
    gpus = tuple(
        GpuInfo(
            name=d.name[:128],
            memory_bytes=d.memory_bytes,
            compute_capability=capabilities.get(i) if d.backend == "cuda" else None,
        )
        for d, i in zip(gpu_results, indices, strict=True)
    )
    return HostOffer(
        gpus=gpus,
        gpu_indices=indices,
        benchmark=Benchmark(
            tflops=tflops,  # type: ignore[arg-type]
            memory_bandwidth_gbps=min(bandwidths) if bandwidths else 0.0,
            host_to_device_gbps=min(h2d) if h2d else None,
        ),
        fingerprint=fingerprint,
        device=first.device,
    )


def _index(device: str) -> int:
    _, _, number = device.partition(":")
    return int(number) if number.isdigit() else 0


def measure_offer(cache_dir: Path, *, cpu_only: bool) -> HostOffer:
    """Benchmark (or read the cached result for this hardware) and build the offer.

    Blocking: torch runs in the calling thread.
    """
    from provider_node.benchmark import run_benchmark
    from provider_node.benchmark.devices import cuda_capabilities, nvidia_driver_cuda

    outcome = run_benchmark(cache_dir=cache_dir)
    capabilities = cuda_capabilities()
    return offer_from_benchmark(
        outcome.result,
        cpu_only=cpu_only,
        capabilities=capabilities,
        driver_cuda=nvidia_driver_cuda() if capabilities else None,
    )
