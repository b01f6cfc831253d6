"""The offer carries the GPU facts ``resources.requires`` is matched against."""

from __future__ import annotations

from datetime import UTC, datetime

from provider_node.benchmark.model import (
    BandwidthFigure,
    BenchmarkResult,
    BenchmarkSettings,
    DeviceResult,
    HostFingerprint,
    MatmulFigure,
)
from provider_node.profile import offer_from_benchmark


def device(index: int, backend: str = "cuda") -> DeviceResult:
    return DeviceResult(
        device=f"cuda:{index}",
        backend=backend,
        name="NVIDIA H200",
        memory_bytes=141 << 30,
        matmul=(MatmulFigure(dtype="bf16", tflops=690.0),),
        memory_bandwidth=BandwidthFigure(gbs=4200.0),
        host_to_device=BandwidthFigure(gbs=55.0),
    )


def result(*devices: DeviceResult) -> BenchmarkResult:
    return BenchmarkResult(
        fingerprint=HostFingerprint(
            device_models=tuple(d.name for d in devices),
            driver="580.159",
            cuda="13.0",
            torch="2.11.0",
        ),
        settings=BenchmarkSettings.tiny(),
        devices=devices,
        measured_at=datetime.now(UTC),
        wall_s=1.0,
    )


def test_compute_capability_per_gpu_and_the_drivers_cuda_reach_the_advert_parts() -> None:
    offer = offer_from_benchmark(
        result(device(0), device(1)),
        cpu_only=False,
        capabilities={0: "9.0", 1: "9.0"},
        driver_cuda="13.0",
    )
    assert [g.compute_capability for g in offer.gpus] == ["9.0", "9.0"]
    assert offer.fingerprint.driver_cuda == "13.0" and offer.fingerprint.driver == "580.159"
    # Unknown facts stay unknown (and are left out of the advert's encoding).
    bare = offer_from_benchmark(result(device(0)), cpu_only=False)
    assert bare.gpus[0].compute_capability is None and bare.fingerprint.driver_cuda is None
    # ROCm has no compute capability nor a CUDA driver version.
    amd = offer_from_benchmark(
        result(device(0, "rocm")), cpu_only=False, capabilities={0: "9.4"}, driver_cuda="12.0"
    )
    assert amd.gpus[0].compute_capability is None and amd.fingerprint.driver_cuda is None
