"""Timing with device synchronisation: warm up until stable, then the best of timed windows.

A *window* is a run of back-to-back calls between one pair of synchronisations, long
enough (``min_rep_s``) that the host's clock, the first launch and the final wait are a
negligible part of it. The figure is the fastest window's time per call: interference from
other processes only ever slows a window down, so the best window is the device's speed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits until ``device`` has finished all queued work."""
    if device.startswith("cuda"):
        index = torch.device(device).index
        return lambda: torch.cuda.synchronize(index)
    if device == "mps":
        return torch.mps.synchronize
    return lambda: None


@dataclass(frozen=True)
class Timing:
    """What :func:`best_seconds_per_call` measured."""

    seconds: float
    """The fastest timed window's seconds per call."""
    calls: int
    """Calls per timed window."""
    warmup_windows: int
    windows: tuple[float, ...]
    """Seconds per call of each timed window, in order."""


def _window(
    fn: Callable[[], object], sync: Callable[[], None], calls: int, clock: Callable[[], float]
) -> float:
    sync()
    start = clock()
    for _ in range(calls):
        fn()
    sync()
    return max(clock() - start, 1e-9) / calls


def _calls_for(per_call: float, min_rep_s: float) -> int:
    return max(1, math.ceil(min_rep_s / per_call))


def best_seconds_per_call(
    fn: Callable[[], object],
    sync: Callable[[], None],
    *,
    repeats: int,
    min_rep_s: float,
    max_warmup_s: float,
    stable_rtol: float,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Seconds per ``fn()`` at the device's steady speed.

    One untimed call (context and kernel set-up), one timed call to size the windows, then
    warm-up windows until two in a row agree within ``stable_rtol`` or ``max_warmup_s`` has
    passed (clocks ramping, caches, allocator), then ``repeats`` timed windows of about
    ``min_rep_s`` each; the fastest window wins. The run takes about
    ``max_warmup_s + (repeats + 1) * min_rep_s`` at most (a single call longer than
    ``min_rep_s`` makes each window one call).
    """
    fn()
    sync()
    calls = _calls_for(_window(fn, sync, 1, clock), min_rep_s)
    warmup_started = clock()
    previous: float | None = None
    warmup_windows = 0
    while True:
        per_call = _window(fn, sync, calls, clock)
        warmup_windows += 1
        calls = _calls_for(per_call, min_rep_s)
        if previous is not None and abs(per_call - previous) <= stable_rtol * previous:
            break
        if clock() - warmup_started >= max_warmup_s:
            break
        previous = per_call
    windows = tuple(_window(fn, sync, calls, clock) for _ in range(max(1, repeats)))
    return Timing(min(windows), calls, warmup_windows, windows)
