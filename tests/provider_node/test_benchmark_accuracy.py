"""The benchmark-accuracy bench: its plain loop multiplies what it claims, and a tiny run
prints the benchmark's figure, the loop's and their ratio per dtype. Also: the benchmark pins
torch's default matmul flags for each dtype and restores the caller's."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.benchmark_accuracy import plain_loop_tflops
from provider_node.benchmark.matmul import matmul_flags

ROOT = Path(__file__).resolve().parents[2]
TINY_RUN = ("--device", "cpu", "--tiny", "--windows", "2", "--json")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def flags() -> Iterator[Any]:
    m = torch.backends.cuda.matmul
    saved = (
        m.allow_tf32,
        m.allow_fp16_reduced_precision_reduction,
        m.allow_bf16_reduced_precision_reduction,
    )
    yield m
    (
        m.allow_tf32,
        m.allow_fp16_reduced_precision_reduction,
        m.allow_bf16_reduced_precision_reduction,
    ) = saved


def test_the_plain_loop_multiplies_n_by_n_in_the_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[torch.Size, torch.dtype, torch.Size, torch.dtype, torch.dtype]] = []
    real = torch.mm

    def spy(a: torch.Tensor, b: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
        seen.append((a.shape, a.dtype, b.shape, b.dtype, out.dtype))
        return real(a, b, out=out)

    monkeypatch.setattr(torch, "mm", spy)
    best, windows = plain_loop_tflops("cpu", "bf16", 48, warmup_s=0.01, window_s=0.005, windows=3)
    shape = torch.Size([48, 48])
    assert set(seen) == {(shape, torch.bfloat16, shape, torch.bfloat16, torch.bfloat16)}
    assert len(windows) == 3 and best == max(windows) and best > 0
    assert len(seen) >= 1 + 3  # a warm-up, then three windows of at least one product


def test_the_benchmark_pins_default_flags_per_dtype_and_restores(flags: Any) -> None:
    flags.allow_tf32 = True
    flags.allow_fp16_reduced_precision_reduction = False
    flags.allow_bf16_reduced_precision_reduction = False
    with matmul_flags("bf16", "cuda"):
        assert not flags.allow_tf32
        assert flags.allow_bf16_reduced_precision_reduction
        assert flags.allow_fp16_reduced_precision_reduction
    assert flags.allow_tf32
    assert not flags.allow_fp16_reduced_precision_reduction
    assert not flags.allow_bf16_reduced_precision_reduction
    flags.allow_tf32 = False
    with matmul_flags("tf32", "cuda"):
        assert flags.allow_tf32
    assert not flags.allow_tf32


def test_a_tiny_run_prints_both_figures_and_their_ratio() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.benchmark_accuracy", *TINY_RUN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["bench"] == "benchmark_accuracy" and report["device"] == "cpu"
    assert "fp32" in report["dtypes"] and set(report["skipped"]) >= {"tf32", "fp16"}
    for dtype, figure in report["dtypes"].items():
        assert set(figure["n"]) <= {64, 128}  # the tiny settings' sizes
        bench, loop = figure["benchmark_tflops"], figure["loop_tflops"]
        assert len(bench) == len(loop) == len(figure["ratios"]) == 3  # rounds on a CPU
        for b, lo, ratio, windows in zip(
            bench, loop, figure["ratios"], figure["loop_windows_tflops"], strict=True
        ):
            assert ratio == pytest.approx(b / lo, rel=1e-3)
            assert lo == max(windows) and len(windows) == 2
        assert figure["benchmark_vs_loop"] == sorted(figure["ratios"])[1]
        assert figure["best_vs_best"] == pytest.approx(max(bench) / max(loop), rel=1e-3)
        assert report["benchmark_vs_loop"][dtype] == figure["benchmark_vs_loop"]
