"""GPU health, re-checked while the daemon runs.

Every ``PROVIDER_GPU_CHECK_PERIOD_S`` each GPU is asked through NVML (where ``pynvml``
imports and a driver answers), and each GPU no job holds runs a tiny kernel in a
short-lived child process, so the daemon itself never holds a CUDA context that would take
memory from jobs. A GPU that fails is marked failed in the :class:`~provider_node.gpus.GpuPool`:
no job gets it and adverts stop offering it; the reason is logged and exported in the
metrics. A later check that passes brings it back.

The probe is injectable (:data:`Probe`), so tests can make a GPU fail. NVML numbers GPUs in
PCI bus order; the daemon's indices are torch's, which agree when ``CUDA_DEVICE_ORDER`` is
``PCI_BUS_ID`` or the GPUs are alike.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import trio

from provider_node.gpus import GpuPool

log = logging.getLogger(__name__)

Probe = Callable[[Sequence[int], Sequence[int]], dict[int, str | None]]
"""``probe(devices, idle)``: the verdict per GPU it examined (None: healthy, else why not);
``idle`` are the GPUs no job holds, which may run a test kernel. GPUs left out of the answer
keep their state."""

KERNEL_TIMEOUT_S = 120.0
KERNEL_EXPECTED = 1047552.0
"""2 * (0 + 1 + ... + 1023): what the test kernel must compute."""
KERNEL = """
import json, sys
import torch
out = {}
for arg in sys.argv[1:]:
    try:
        x = torch.arange(1024, dtype=torch.float32, device=f"cuda:{int(arg)}")
        got = float((x * 2).sum().item())
        out[arg] = None if got == EXPECTED else f"the test kernel computed {got}, not EXPECTED"
    except Exception as exc:
        out[arg] = f"the test kernel failed: {exc}"[:300]
print(json.dumps(out))
""".replace("EXPECTED", repr(KERNEL_EXPECTED))


def nvml_check(nvml: Any, devices: Sequence[int]) -> dict[int, str | None]:
    """Each GPU must answer NVML for its memory and utilization."""
    found: dict[int, str | None] = {}
    for index in devices:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            nvml.nvmlDeviceGetMemoryInfo(handle)
            nvml.nvmlDeviceGetUtilizationRates(handle)
            found[index] = None
        except Exception as exc:  # NVML raises its own error family (GPU lost, unknown ...)
            found[index] = f"NVML: {exc}"[:300]
    return found


def nvml_utilization(nvml: Any | None, devices: Sequence[int]) -> float | None:
    """The mean busy fraction NVML reports over ``devices``; None without NVML or GPUs."""
    if nvml is None or not devices:
        return None
    try:
        rates = [
            nvml.nvmlDeviceGetUtilizationRates(nvml.nvmlDeviceGetHandleByIndex(i)).gpu
            for i in devices
        ]
    except Exception as exc:
        log.debug("NVML utilization unreadable: %s", exc)
        return None
    return min(1.0, max(0.0, sum(rates) / len(rates) / 100.0))


def kernel_check(
    devices: Sequence[int], *, python: str = sys.executable, timeout_s: float = KERNEL_TIMEOUT_S
) -> dict[int, str | None]:
    """Run the test kernel on each of ``devices`` in one child process."""
    if not devices:
        return {}
    argv = [python, "-c", KERNEL, *(str(d) for d in devices)]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return dict.fromkeys(devices, f"the test kernel did not finish within {timeout_s:.0f} s")
    except OSError as exc:
        return dict.fromkeys(devices, f"the test kernel could not start: {exc}")
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        tail = done.stderr.decode(errors="replace").strip()[-300:]
        return dict.fromkeys(devices, f"the test kernel process failed: {tail or 'no answer'}")
    return {d: (None if answer.get(str(d)) is None else str(answer[str(d)])) for d in devices}


def default_probe(nvml: Any | None) -> Probe:
    """NVML on every GPU, then the test kernel on idle ones NVML found healthy."""

    def probe(devices: Sequence[int], idle: Sequence[int]) -> dict[int, str | None]:
        found = nvml_check(nvml, devices) if nvml is not None else {}
        found.update(kernel_check([d for d in idle if found.get(d) is None]))
        return found

    return probe


class GpuHealth:
    """Keeps :attr:`failures` (GPU index to reason) and the pool's failed set current."""

    def __init__(self, pool: GpuPool, probe: Probe, *, period_s: float) -> None:
        self.pool = pool
        self.probe = probe
        self.period_s = period_s
        self.failures: dict[int, str] = {}
        self.checks = 0

    def check(self) -> dict[int, str]:
        """Probe once, update the pool, log each change; returns the failures now."""
        idle = self.pool.idle_devices
        for index, reason in sorted(self.probe(self.pool.devices, idle).items()):
            if index not in self.pool.devices:
                continue
            if reason is not None:
                if self.failures.get(index) != reason:
                    log.warning(
                        "GPU %d failed its health check, no longer offered: %s", index, reason
                    )
                self.failures[index] = reason
            elif self.failures.pop(index, None) is not None:
                log.info("GPU %d passed its health check again and is offered again", index)
        self.pool.set_failed(self.failures)
        self.checks += 1
        return dict(self.failures)

    async def run(self) -> None:
        """Check now and every ``period_s`` until cancelled."""
        while True:
            # A check blocks in NVML or waits for the kernel's process: abandon it on exit.
            await trio.to_thread.run_sync(self.check, abandon_on_cancel=True)  # type: ignore[call-arg]
            await trio.sleep(self.period_s)
