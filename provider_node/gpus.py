"""Which of the provider's GPUs are free, and handing them to jobs."""

from __future__ import annotations

from collections.abc import Sequence


class GpuPool:
    """Device indices (as ``CUDA_VISIBLE_DEVICES`` counts them) not held by a job."""

    def __init__(self, devices: Sequence[int]) -> None:
        self.devices = tuple(devices)
        self._free = list(devices)

    @property
    def total(self) -> int:
        return len(self.devices)

    @property
    def free(self) -> int:
        return len(self._free)

    def acquire(self, count: int) -> tuple[int, ...] | None:
        """Take ``count`` devices (lowest indices first), or None when too few are free."""
        if count > len(self._free):
            return None
        self._free.sort()
        taken, self._free = self._free[:count], self._free[count:]
        return tuple(taken)

    def release(self, devices: Sequence[int]) -> None:
        for device in devices:
            if device in self.devices and device not in self._free:
                self._free.append(device)
