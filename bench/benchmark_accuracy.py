"""``provider benchmark``'s matmul figures against a plain torch loop, in one process.

For each dtype the device supports (CPU: fp32, bf16; CUDA: fp32, tf32, fp16, bf16) this
runs, ``--rounds`` times, the production measurement
(``provider_node.benchmark.matmul.measure_matmul`` with the settings ``provider benchmark``
uses on that device, under ``torch.inference_mode`` as the runner does) and then, on the
same device and at the size the benchmark chose, an independent plain loop:
``torch.mm(a, b, out=c)`` on randn inputs, back-to-back products for as long as the
benchmark's longest warm-up, then the best of ``--windows`` timed windows
as long as the benchmark's (CUDA events on a GPU, ``time.perf_counter`` on the CPU). It
prints both TFLOPS figures and their ratio per round; ``benchmark_vs_loop`` is the median
of the rounds' ratios (1.0: the benchmark reports what the loop reaches). Several rounds
are for a shared CPU, whose noise swamps a single comparison.

    python -m bench.benchmark_accuracy [--device cuda|cuda:N|cpu] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import torch

from provider_node.benchmark.devices import DeviceInfo, select_devices
from provider_node.benchmark.matmul import measure_matmul, unsupported_reason
from provider_node.benchmark.model import MATMUL_DTYPES, BenchmarkSettings
from provider_node.benchmark.runner import default_settings

LOOP_DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


class _Clock:
    """Seconds of device work between ``start()`` and ``stop()``: CUDA events on a GPU (the
    loop's own clock, not the benchmark's), the host's clock elsewhere."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        if self.cuda:
            self.begin = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)
        self.t0 = 0.0

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.begin.record()
        else:
            self.t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            return float(self.begin.elapsed_time(self.end)) / 1e3
        return time.perf_counter() - self.t0


def plain_loop_tflops(
    device: str, dtype: str, n: int, *, warmup_s: float, window_s: float, windows: int
) -> tuple[float, list[float]]:
    """Best TFLOPS of ``windows`` timed runs of back-to-back n x n products after warm-up,
    and every window's TFLOPS."""
    tf32 = device.startswith("cuda") and dtype == "tf32"
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a = torch.randn(n, n, device=device).to(LOOP_DTYPES[dtype])
        b = torch.randn(n, n, device=device).to(LOOP_DTYPES[dtype])
        c = torch.empty(n, n, device=device, dtype=LOOP_DTYPES[dtype])
        clock = _Clock(device)
        flop = 2.0 * n**3
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        sync()
        products, t0 = 0, time.perf_counter()
        while True:  # warm-up: back-to-back products for warmup_s
            torch.mm(a, b, out=c)
            products += 1
            if products % 8 == 0 or not clock.cuda:
                sync()
                warm = time.perf_counter() - t0
                if warm >= warmup_s:
                    break
        per_product = warm / products
        count = max(1, math.ceil(window_s / per_product))
        rates = []
        for _ in range(windows):
            clock.start()
            for _ in range(count):
                torch.mm(a, b, out=c)
            rates.append(flop * count / clock.stop() / 1e12)
        return max(rates), rates
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def _sig(value: float) -> float:
    return float(f"{value:.6g}")


def _device(name: str) -> DeviceInfo:
    return select_devices([name])[0]


def compare(
    info: DeviceInfo,
    dtype: str,
    settings: BenchmarkSettings,
    *,
    rounds: int,
    windows: int,
    warmup_s: float,
) -> dict[str, Any] | str:
    """``rounds`` times: the production figure, then the plain loop at the size it chose.
    The figures per round, the median of the rounds' ratios (``benchmark_vs_loop``) and the
    best figure's ratio to the best loop; or why the dtype was not measured."""
    rows: list[tuple[int, float, float, list[float], float]] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        with torch.inference_mode():
            figure = measure_matmul(info, dtype, settings)
        bench_s = time.perf_counter() - t0
        if figure.tflops is None or figure.n is None:
            return figure.skipped or "not measured"
        with torch.inference_mode():
            loop, per_window = plain_loop_tflops(
                info.device,
                dtype,
                figure.n,
                warmup_s=warmup_s,
                window_s=settings.min_rep_s,
                windows=windows,
            )
        rows.append((figure.n, figure.tflops, loop, per_window, bench_s))
    ratios = [bench / loop for _, bench, loop, _, _ in rows]
    return {
        "n": [n for n, *_ in rows],
        "benchmark_tflops": [_sig(bench) for _, bench, *_ in rows],
        "loop_tflops": [_sig(loop) for _, _, loop, *_ in rows],
        "loop_windows_tflops": [[_sig(w) for w in row[3]] for row in rows],
        "ratios": [round(r, 4) for r in ratios],
        "benchmark_vs_loop": round(statistics.median(ratios), 4),
        "best_vs_best": round(max(r[1] for r in rows) / max(r[2] for r in rows), 4),
        "benchmark_s": [round(row[4], 2) for row in rows],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--rounds", type=int, default=0, help="benchmark-then-loop rounds (0: GPU 1, CPU 3)"
    )
    ap.add_argument(
        "--windows", type=int, default=0, help="plain loop's windows (0: the benchmark's)"
    )
    ap.add_argument("--dtypes", default=",".join(MATMUL_DTYPES))
    ap.add_argument(
        "--tiny", action="store_true", help="tiny sizes (a smoke run; figures mean nothing)"
    )
    ap.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads for both (0: torch's default)"
    )
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    info = _device(args.device)
    settings = BenchmarkSettings.tiny() if args.tiny else default_settings([info])
    gpu = info.backend != "cpu"
    rounds = args.rounds or (1 if gpu else 3)
    windows = args.windows or settings.repeats
    started = time.perf_counter()
    figures: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    print(
        f"device {info.device} ({info.name}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads; {rounds} round(s) per dtype",
        flush=True,
    )
    print(f"{'dtype':<6}{'n':>7}{'benchmark':>14}{'plain loop':>14}{'ratio':>8}{'bench s':>9}")
    for dtype in args.dtypes.split(","):
        reason = unsupported_reason(info, dtype)
        found = reason or compare(
            info,
            dtype,
            settings,
            rounds=rounds,
            windows=windows,
            warmup_s=settings.max_warmup_s,
        )
        if isinstance(found, str):
            skipped[dtype] = found
            continue
        figures[dtype] = found
        for i in range(rounds):
            print(
                f"{dtype:<6}{found['n'][i]:>7}{found['benchmark_tflops'][i]:>14.4f}"
                f"{found['loop_tflops'][i]:>14.4f}{found['ratios'][i]:>8.3f}"
                f"{found['benchmark_s'][i]:>9.1f}",
                flush=True,
            )
        print(
            f"{dtype:<6} median ratio {found['benchmark_vs_loop']:.3f}, "
            f"best figure / best loop {found['best_vs_best']:.3f}",
            flush=True,
        )
    for dtype, why in skipped.items():
        print(f"{dtype:<6} skipped: {why}")
    wall = time.perf_counter() - started
    print(f"TFLOPS; plain loop: best of {windows} windows; run time {wall:.1f}s")
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "benchmark_accuracy",
                    "device": info.device,
                    "name": info.name,
                    "torch": torch.__version__,
                    "cpu_threads": torch.get_num_threads(),
                    "rounds": rounds,
                    "dtypes": figures,
                    "skipped": skipped,
                    "benchmark_vs_loop": {d: f["benchmark_vs_loop"] for d, f in figures.items()},
                    "wall_s": round(wall, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
