"""Which device nodes a sandbox gets for the GPUs a job is assigned, and how it names them.

A job assigned GPUs k..m gets exactly those ``/dev/nvidiaN`` nodes plus the control and
unified-memory nodes CUDA needs (``nvidiactl``, ``nvidia-uvm``, ``nvidia-uvm-tools``,
``nvidia-modeset``), so no environment variable it sets can reach another job's GPU: the
other nodes do not exist in its ``/dev``, and it cannot create them (no capabilities, no
``mknod`` in a user namespace).

GPU index ``i`` (what the provider's :class:`~provider_node.gpus.GpuPool` hands out, in
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` order; the daemon's own benchmark numbers GPUs in CUDA's
default order, which is the same on a host of one GPU model) is the ``i``-th GPU the driver
lists under
``/proc/driver/nvidia/gpus/<PCI bus id>/information`` sorted by bus id; its node is
``nvidia<Device Minor>``, which need not be ``nvidia<i>``. Inside the sandbox CUDA lists
only the GPUs whose nodes it can open, so ``CUDA_VISIBLE_DEVICES`` names them by UUID
(true however CUDA numbers them), or by position among the assigned ones where the driver
gives no UUIDs. Without a driver listing (no NVIDIA driver) index ``i`` is ``nvidia<i>``; a
listing that cannot say which node a GPU is fails the run rather than guess. Both
directories are injectable, so tests use stand-in nodes.

AMD GPUs (``/dev/kfd``, ``/dev/dri``) are bound whole when any GPU is assigned: they are
not isolated per GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import SandboxError

CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
"""NVIDIA nodes every CUDA process opens, whichever GPUs it uses."""
SHARED_NODES = ("kfd", "dri")
"""AMD's compute and render nodes, bound whole (not per GPU)."""
MAX_INFO_BYTES = 64 * 1024

_MINOR = re.compile(r"^Device Minor:\s*([0-9]+)\s*$", re.MULTILINE)
_UUID = re.compile(r"^GPU UUID:\s*(GPU-[0-9A-Fa-f-]{36})\s*$", re.MULTILINE)


@dataclass(frozen=True)
class NvidiaGpu:
    """One GPU as the NVIDIA driver lists it."""

    bus_id: str
    minor: int
    uuid: str | None


class GpuDevices:
    """The host's GPU device nodes, read from ``dev_dir`` and ``driver_dir``."""

    def __init__(
        self,
        dev_dir: Path = Path("/dev"),
        driver_dir: Path = Path("/proc/driver/nvidia/gpus"),
    ) -> None:
        self.dev_dir = dev_dir
        self.driver_dir = driver_dir
        self._gpus: list[NvidiaGpu] | None = None
        self._problem: str | None = None

    def nvidia_gpus(self) -> list[NvidiaGpu]:
        """The driver's GPUs in PCI bus order (read once; empty without the driver)."""
        if self._gpus is None:
            found: list[NvidiaGpu] = []
            problem: str | None = None
            try:
                entries = sorted(p for p in self.driver_dir.iterdir() if p.is_dir())
            except OSError:
                entries = []
            for entry in entries:
                info = entry / "information"
                try:
                    with open(info, encoding="utf-8", errors="replace") as fh:
                        text = fh.read(MAX_INFO_BYTES)
                except OSError as exc:
                    problem = problem or f"cannot read {info}: {exc}"
                    continue
                minor, uuid = _MINOR.search(text), _UUID.search(text)
                if minor is None:
                    problem = problem or f"{info} names no Device Minor"
                    continue
                found.append(NvidiaGpu(entry.name, int(minor.group(1)), uuid and uuid.group(1)))
            self._gpus, self._problem = found, problem
        return self._gpus

    def _listed(self, index: int) -> NvidiaGpu | None:
        """GPU ``index`` in the driver's listing; None without one. A listing that cannot
        place it raises: a guess could hand the job another job's GPU."""
        gpus = self.nvidia_gpus()
        if self._problem is not None:
            raise SandboxError(f"cannot tell which device node is GPU {index}: {self._problem}")
        if not gpus:
            return None
        if not 0 <= index < len(gpus):
            raise SandboxError(f"GPU {index} is not among the driver's {len(gpus)} GPUs")
        return gpus[index]

    def _minor(self, index: int) -> int:
        listed = self._listed(index)
        return index if listed is None else listed.minor

    def binds(self, indices: tuple[int, ...]) -> list[tuple[str, str]]:
        """(host node, node in the sandbox) for GPUs ``indices``: their own nodes and the
        shared ones; nothing without GPUs. Nodes this host lacks are left out."""
        if not indices:
            return []
        wanted = [f"nvidia{self._minor(i)}" for i in sorted(set(indices))]
        found: list[tuple[str, str]] = []
        for name in (*wanted, *CONTROL_NODES, *SHARED_NODES):
            node = self.dev_dir / name
            if node.exists():
                found.append((str(node), f"/dev/{name}"))
        return found

    def visible(self, indices: tuple[int, ...]) -> str:
        """``CUDA_VISIBLE_DEVICES`` inside a sandbox holding only ``indices``' nodes."""
        ordered = sorted(set(indices))
        listed = [self._listed(i) for i in ordered]
        uuids = [g.uuid if g is not None else None for g in listed]
        if ordered and all(uuids):
            return ",".join(u for u in uuids if u)
        return ",".join(str(position) for position in range(len(ordered)))
