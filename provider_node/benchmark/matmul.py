"""Dense matmul throughput per dtype, with matrix sizes grown to fit the device.

Measured as a well-written loop measures it: inputs and the output made once on the device,
products back to back between one pair of synchronisations, warm-up until stable and the
best of several windows (:func:`~provider_node.benchmark.timing.best_seconds_per_call`),
with torch's default fast-path flags pinned for the duration (tf32 only for ``tf32``;
reduced-precision reductions allowed for fp16/bf16, as a job running with torch's defaults
gets them), whatever state the process was left in.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

from provider_node.benchmark.devices import DeviceInfo
from provider_node.benchmark.model import BenchmarkSettings, MatmulFigure
from provider_node.benchmark.timing import best_seconds_per_call, synchronizer

_TORCH_DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


def unsupported_reason(info: DeviceInfo, dtype: str) -> str | None:
    """Why ``dtype`` is not measured on this device, or ``None`` when it is."""
    if dtype == "tf32":
        if info.backend != "cuda":
            return "tf32 is an NVIDIA tensor-core mode"
        major, _ = torch.cuda.get_device_capability(info.index)
        if major < 8:
            return f"tf32 needs compute capability 8.0, device has {major}.x"
    if info.backend == "cpu" and dtype == "fp16":
        return "CPU fp16 matmul has no fast kernels"
    if dtype == "bf16" and info.backend in ("cuda", "rocm"):
        with torch.cuda.device(info.index):
            if not torch.cuda.is_bf16_supported():
                return "device has no bf16 support"
    return None


@contextlib.contextmanager
def matmul_flags(dtype: str, backend: str) -> Iterator[None]:
    """torch's default matmul flags for ``dtype``, restored on exit: tf32 exactly when
    ``dtype`` is tf32; fp16/bf16 reduced-precision reductions allowed (torch's default)."""
    if backend not in ("cuda", "rocm"):
        yield
        return
    flags = torch.backends.cuda.matmul
    saved = (
        flags.allow_tf32,
        flags.allow_fp16_reduced_precision_reduction,
        flags.allow_bf16_reduced_precision_reduction,
    )
    flags.allow_tf32 = dtype == "tf32"
    flags.allow_fp16_reduced_precision_reduction = True
    flags.allow_bf16_reduced_precision_reduction = True
    try:
        yield
    finally:
        flags.allow_tf32 = saved[0]
        flags.allow_fp16_reduced_precision_reduction = saved[1]
        flags.allow_bf16_reduced_precision_reduction = saved[2]


def _fits(info: DeviceInfo, n: int, itemsize: int) -> bool:
    # Three matrices, and no more than half of the device's memory.
    return 3 * n * n * itemsize <= info.memory_bytes // 2


def _product_time(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, device: str) -> float:
    """Fastest of three products after one untimed call: a size probe, robust to noise."""
    sync = synchronizer(device)
    torch.matmul(a, b, out=out)
    sync()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        sync()
        best = min(best, time.perf_counter() - start)
        if best > 1.0:
            break  # one slow sample is enough to know the size is too big
    return best


def measure_matmul(info: DeviceInfo, dtype: str, settings: BenchmarkSettings) -> MatmulFigure:
    """TFLOPS of an n x n by n x n product in ``dtype``; skipped with a reason if unsupported."""
    reason = unsupported_reason(info, dtype)
    if reason is not None:
        return MatmulFigure(dtype=dtype, skipped=reason)
    torch_dtype = _TORCH_DTYPES[dtype]
    itemsize = torch.empty((), dtype=torch_dtype).element_size()
    with matmul_flags(dtype, info.backend):
        n = settings.min_matmul_n
        while True:
            # Made on the device: filling 8192^2 matrices on the host would dominate the run.
            a = torch.randn(n, n, device=info.device).to(torch_dtype)
            b = torch.randn(n, n, device=info.device).to(torch_dtype)
            out = torch.empty(n, n, device=info.device, dtype=torch_dtype)
            took = _product_time(a, b, out, info.device)
            if n == settings.min_matmul_n and took > settings.slow_probe_s:
                gflops = 2 * n**3 / took / 1e9
                return MatmulFigure(
                    dtype=dtype, skipped=f"too slow here ({gflops:.2f} GFLOPS at n={n})"
                )
            bigger = n * 2
            if (
                took >= settings.target_product_s
                or bigger > settings.max_matmul_n
                or not _fits(info, bigger, itemsize)
            ):
                break
            del a, b, out
            n = bigger
        timing = best_seconds_per_call(
            lambda: torch.matmul(a, b, out=out),
            synchronizer(info.device),
            repeats=settings.repeats,
            min_rep_s=settings.min_rep_s,
            max_warmup_s=settings.max_warmup_s,
            stable_rtol=settings.stable_rtol,
        )
    return MatmulFigure(dtype=dtype, tflops=2 * n**3 / timing.seconds / 1e12, n=n)
