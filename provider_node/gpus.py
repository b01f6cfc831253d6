"""Which of the provider's GPUs are free, and handing them to jobs."""

from __future__ import annotations

from collections.abc import Callable, Sequence


class GpuPool:
    """Device indices (as ``CUDA_VISIBLE_DEVICES`` counts them) not held by a job.

    ``prefer`` (set by whoever keeps warm sandboxes) names GPU sets to hand out first when
    one fits a request, so a job lands where a sandbox is already started for it.
    """

    def __init__(self, devices: Sequence[int]) -> None:
        self.devices = tuple(devices)
        self._free = list(devices)
        self.prefer: Callable[[], Sequence[tuple[int, ...]]] | None = None

    @property
    def total(self) -> int:
        return len(self.devices)

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def free_devices(self) -> tuple[int, ...]:
        return tuple(sorted(self._free))

    def acquire(self, count: int) -> tuple[int, ...] | None:
        """Take ``count`` devices (a preferred set if one fits, else the lowest indices
        first), or None when too few are free."""
        if count > len(self._free):
            return None
        self._free.sort()
        if count and self.prefer is not None:
            for wanted in self.prefer():
                if len(wanted) == count and set(wanted) <= set(self._free):
                    self._free = [d for d in self._free if d not in wanted]
                    return tuple(sorted(wanted))
        taken, self._free = self._free[:count], self._free[count:]
        return tuple(taken)

    def release(self, devices: Sequence[int]) -> None:
        for device in devices:
            if device in self.devices and device not in self._free:
                self._free.append(device)
