"""Timing with device synchronisation: warm up, loop to a minimum duration, take the median."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits until ``device`` has finished all queued work."""
    if device.startswith("cuda"):
        index = torch.device(device).index
        return lambda: torch.cuda.synchronize(index)
    if device == "mps":
        return torch.mps.synchronize
    return lambda: None


def seconds_per_call(
    fn: Callable[[], object],
    sync: Callable[[], None],
    *,
    warmup: int,
    repeats: int,
    min_rep_s: float,
) -> float:
    """Median wall time of one ``fn()`` over ``repeats`` timed repetitions.

    Each repetition calls ``fn`` enough times to last ``min_rep_s`` (calibrated from one timed
    call after the warm-up), with a synchronisation before and after so queued device work
    is inside the measurement.
    """
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    single = max(time.perf_counter() - start, 1e-7)
    calls = max(1, math.ceil(min_rep_s / single))
    samples = []
    for _ in range(max(1, repeats)):
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)
