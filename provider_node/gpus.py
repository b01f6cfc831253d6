"""Which of the provider's GPUs are free, and handing them to jobs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence


class GpuPool:
    """Device indices (as ``CUDA_VISIBLE_DEVICES`` counts them) not held by a job.

    ``prefer`` (set by whoever keeps warm sandboxes) names GPU sets to hand out first when
    one fits a request, so a job lands where a sandbox is already started for it. Devices
    marked failed (:meth:`set_failed`, from the health checks) are never handed out and
    count as neither free nor offered until they are healthy again.
    """

    def __init__(self, devices: Sequence[int]) -> None:
        self.devices = tuple(devices)
        self._free = list(devices)
        self.prefer: Callable[[], Sequence[tuple[int, ...]]] | None = None
        self.failed: frozenset[int] = frozenset()

    def set_failed(self, devices: Iterable[int]) -> None:
        """Mark exactly ``devices`` as failed (the others as healthy)."""
        self.failed = frozenset(devices) & frozenset(self.devices)

    @property
    def healthy_devices(self) -> tuple[int, ...]:
        return tuple(d for d in self.devices if d not in self.failed)

    @property
    def idle_devices(self) -> tuple[int, ...]:
        """Devices no job holds, failed or not (what a health check may run a kernel on)."""
        return tuple(sorted(self._free))

    @property
    def total(self) -> int:
        return len(self.devices)

    @property
    def free(self) -> int:
        return len(self.free_devices)

    @property
    def free_devices(self) -> tuple[int, ...]:
        return tuple(sorted(d for d in self._free if d not in self.failed))

    def acquire(self, count: int) -> tuple[int, ...] | None:
        """Take ``count`` healthy devices (a preferred set if one fits, else the lowest
        indices first), or None when too few are free."""
        usable = list(self.free_devices)
        if count > len(usable):
            return None
        if count and self.prefer is not None:
            for wanted in self.prefer():
                if len(wanted) == count and set(wanted) <= set(usable):
                    self._free = [d for d in self._free if d not in wanted]
                    return tuple(sorted(wanted))
        taken = tuple(usable[:count])
        self._free = [d for d in self._free if d not in taken]
        return taken

    def release(self, devices: Sequence[int]) -> None:
        for device in devices:
            if device in self.devices and device not in self._free:
                self._free.append(device)
