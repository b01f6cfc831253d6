"""Find the devices torch can use and the versions that make up a fingerprint.

CUDA and ROCm devices come from ``torch.cuda`` (ROCm builds reuse that namespace and say so
in ``torch.version.hip``), Apple GPUs from ``torch.backends.mps``; the CPU is always there.
The NVIDIA driver version comes from NVML when ``pynvml`` imports, else ``nvidia-smi``.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from protocol.errors import ConfigError
from provider_node.benchmark.model import HostFingerprint


@dataclass(frozen=True)
class DeviceInfo:
    """One device as torch names it (``cuda:0``, ``mps``, ``cpu``) and what it is."""

    device: str
    backend: str  # cuda | rocm | mps | cpu
    name: str
    memory_bytes: int
    index: int | None = None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _nvml(query: Callable[[Any], object]) -> object | None:
    """``query(pynvml)`` inside an NVML session; None where NVML is missing or fails (its
    errors are a family of their own: the callers fall back to ``nvidia-smi``)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            return query(pynvml)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def _smi(args: Sequence[str]) -> str | None:
    """``nvidia-smi``'s output, or None where it is missing or fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run([smi, *args], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def nvidia_driver_version() -> str | None:
    """The NVIDIA kernel driver version, or ``None`` where there is none."""
    version = _nvml(lambda nvml: nvml.nvmlSystemGetDriverVersion())
    if version is not None:
        return version.decode() if isinstance(version, bytes) else str(version)
    out = _smi(["--query-gpu=driver_version", "--format=csv,noheader"])
    lines = out.strip().splitlines() if out else []
    return lines[0].strip() if lines else None


def nvidia_driver_cuda() -> str | None:
    """The newest CUDA version the NVIDIA driver supports (``13.0``), or None where there is
    no NVIDIA driver. From NVML when ``pynvml`` imports, else ``nvidia-smi``'s header."""
    number = _nvml(lambda nvml: int(nvml.nvmlSystemGetCudaDriverVersion()))
    if isinstance(number, int):
        return f"{number // 1000}.{number % 1000 // 10}"
    out = _smi([])
    found = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", out or "")
    return found.group(1) if found else None


def cuda_capabilities() -> dict[int, str]:
    """Compute capability (``major.minor``) per CUDA device index; empty without NVIDIA GPUs."""
    if not torch.cuda.is_available() or getattr(torch.version, "hip", None):
        return {}
    found: dict[int, str] = {}
    for i in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(i)
        found[i] = f"{major}.{minor}"
    return found


def amdgpu_driver_version() -> str | None:
    try:
        return Path("/sys/module/amdgpu/version").read_text().strip() or None
    except OSError:
        return None


def _gpu_backend() -> str:
    return "rocm" if getattr(torch.version, "hip", None) else "cuda"


def all_devices() -> list[DeviceInfo]:
    """Every device torch can use here, GPUs first, the CPU last."""
    found: list[DeviceInfo] = []
    if torch.cuda.is_available():
        backend = _gpu_backend()
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            found.append(DeviceInfo(f"cuda:{i}", backend, props.name, props.total_memory, i))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        mac = platform.mac_ver()[0]
        memory = _host_memory()
        recommended = getattr(getattr(torch, "mps", None), "recommended_max_memory", None)
        if callable(recommended):
            memory = int(recommended())
        found.append(
            DeviceInfo("mps", "mps", f"Apple {platform.machine()} GPU macOS {mac}", memory)
        )
    found.append(DeviceInfo("cpu", "cpu", cpu_name(), _host_memory()))
    return found


def select_devices(selection: Sequence[str] | None = None) -> list[DeviceInfo]:
    """Resolve ``--device`` values: ``cpu``, ``mps``, ``cuda`` (all GPUs) or ``cuda:N``.

    With no selection: every GPU, or the CPU where there is none.
    """
    devices = all_devices()
    if not selection:
        gpus = [d for d in devices if d.backend != "cpu"]
        return gpus or [d for d in devices if d.backend == "cpu"]
    chosen: list[DeviceInfo] = []
    for wanted in selection:
        wanted = wanted.strip().lower()
        matches = [
            d for d in devices if d.device == wanted or (wanted == "cuda" and d.index is not None)
        ]
        if not matches:
            known = ", ".join(d.device for d in devices)
            raise ConfigError(f"no device {wanted!r} on this host (have: {known})")
        chosen += [d for d in matches if d not in chosen]
    return chosen


def fingerprint_of(devices: Sequence[DeviceInfo]) -> HostFingerprint:
    """The fingerprint of a benchmark over ``devices`` on this host."""
    backends = {d.backend for d in devices}
    driver: str | None = None
    if "cuda" in backends:
        driver = nvidia_driver_version()
    elif "rocm" in backends:
        driver = amdgpu_driver_version()
    elif "mps" in backends:
        driver = f"macOS {platform.mac_ver()[0]}"
    return HostFingerprint(
        device_models=tuple(d.name for d in devices),
        driver=driver,
        cuda=torch.version.cuda if "cuda" in backends else None,
        rocm=getattr(torch.version, "hip", None) if "rocm" in backends else None,
        torch=torch.__version__,
    )
