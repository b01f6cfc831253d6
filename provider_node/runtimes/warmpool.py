"""A small pool of warm sandboxes, kept while the provider waits for jobs.

``async with WarmPool(bwrap, directory, PoolConfig(size=1)) as pool`` keeps up to ``size``
:class:`~provider_node.runtimes.warm.WarmSlot`s started and is itself a :class:`Runtime`:
:meth:`WarmPool.run` hands a job to a ready slot on exactly the job's GPU set. When a
slot on that set is still warming and no other job waits for it, the job waits, at most
twice as long as the last warm-up took (a cold start would cost about that much, and would
share the CPU with the warm-up meanwhile); otherwise it starts cold with the bwrap runtime
the pool wraps. Each slot serves one job; the pool then starts another (one at a time, so
warming never takes more than one core). Bounds: ``size`` slots, each under
``hold.memory_bytes`` and ``hold.max_pids`` until its job's limits replace them, and on a
GPU host each holds ``gpus_per_slot`` GPUs that no job holds (a CUDA context each). GPUs
are never withheld: a job given a GPU that a slot it does not use holds, and a benchmark
challenge on a GPU (:meth:`WarmPool.paused`), first kill that slot. A slot that exits
while idle is replaced; repeated failures back off.

Jobs that bring environment variables an interpreter or library reads when it starts
(``PYTHON*``, ``OMP_*``, ``CUDA_*``, ...) start cold: a warm interpreter has read them already.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import trio

from protocol.errors import SandboxError
from protocol.files import remove_tree
from provider_node.runtimes.bwrap import BwrapRuntime
from provider_node.runtimes.model import PreparedJob, RunResult, TorchEntrypoint
from provider_node.runtimes.warm import SlotHold, WarmSlot

log = logging.getLogger(__name__)

STARTUP_ENV_PREFIXES = (
    "PYTHON", "OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "NUMEXPR_", "NPY_", "TORCH",
    "PYTORCH_", "CUDA_", "CUDNN", "CUBLAS", "NCCL_", "NVIDIA_", "HIP_", "HSA_", "ROCM",
    "ROCR_", "LD_", "MALLOC_", "GLIBC_", "LC_", "LANG", "USER", "LOGNAME", "TZ",
)  # fmt: skip
"""Environment names a warm interpreter may already have read: jobs setting one start cold."""

RECHECK_S = 0.5


@dataclass(frozen=True)
class PoolConfig:
    """How many warm sandboxes to keep, and what each may hold while it waits."""

    size: int = 1
    gpus_per_slot: int = 1
    """On a GPU host: the GPU set of each slot (jobs asking this many GPUs start warm)."""
    hold: SlotHold = field(default_factory=SlotHold)
    max_backoff_s: float = 60.0

    def __post_init__(self) -> None:
        if self.size < 0 or self.gpus_per_slot < 0:
            raise SandboxError("warm pool size and GPUs per slot must not be negative")


@dataclass
class PoolFigures:
    """What the pool did since it opened."""

    warm_starts: int = 0
    cold_starts: int = 0
    warming_waits: int = 0
    """Jobs that waited for a slot still warming on their GPU set (and got it)."""
    slots_started: int = 0
    slots_failed: int = 0
    """Slots that never became ready (exited or timed out while warming)."""
    slots_died: int = 0
    """Ready slots that exited while waiting for a job."""
    slots_killed: int = 0
    """Slots killed to free their GPU (or CPU time) for a job or a challenge."""

    def starts(self) -> dict[str, int]:
        return {"warm": self.warm_starts, "cold": self.cold_starts}


def warm_eligible(job: PreparedJob) -> bool:
    """Whether ``job`` can start in a warm sandbox with the same result as a cold start."""
    if not isinstance(job.entrypoint, TorchEntrypoint):
        return False
    return not any(name.startswith(STARTUP_ENV_PREFIXES) for name in job.env)


class WarmPool:
    """See the module docstring. ``devices``: every GPU of the host (empty: CPU only);
    ``free_gpus``: those no job holds right now."""

    def __init__(
        self,
        runtime: BwrapRuntime,
        directory: Path,
        config: PoolConfig,
        *,
        devices: Sequence[int] = (),
        free_gpus: Callable[[], Sequence[int]] = lambda: (),
    ) -> None:
        self.runtime = runtime
        self.name = runtime.name
        self.directory = directory
        self.config = config
        self.devices = tuple(devices)
        self.free_gpus = free_gpus
        self.figures = PoolFigures()
        self._slots: dict[WarmSlot, trio.CancelScope] = {}
        self._pauses = 0
        self._last_warm_up_s: float | None = None
        self._awaited: set[WarmSlot] = set()
        """Warming slots a job waits for (one job each)."""
        self._failures = 0
        self._retry_at = 0.0
        self._wake = trio.Event()
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._nursery_cm: AbstractAsyncContextManager[trio.Nursery] | None = None

    # ------------------------------------------------------------------ Runtime
    def unavailable_reason(self) -> str | None:
        return self.runtime.unavailable_reason()

    async def run(self, job: PreparedJob) -> RunResult:
        """Run ``job`` in a ready warm slot on its GPU set (waiting for one that is warming
        there, within bounds), else cold."""
        slot = self._take(job) or await self._warmed(job)
        # The job's devices are its own: any other slot on one of them goes first.
        wanted = set(job.gpus)
        await self._kill([s for s in self._slots if wanted & set(s.gpus)])
        if slot is not None:
            result = await slot.run(job)
            if result is not None:
                self.figures.warm_starts += 1
                return result
        self.figures.cold_starts += 1
        return await self.runtime.run(job)

    # -------------------------------------------------------------------- views
    @property
    def slots(self) -> list[WarmSlot]:
        return list(self._slots)

    def ready_gpu_sets(self) -> list[tuple[int, ...]]:
        """GPU sets with a ready slot: where a job starts warm."""
        return [s.gpus for s in self._slots if s.ready]

    async def wait_ready(self, gpus: tuple[int, ...] = (), timeout_s: float = 300.0) -> WarmSlot:
        """Wait for a ready slot on ``gpus`` (for benches and tests)."""
        with trio.fail_after(timeout_s):
            while True:
                for slot in self._slots:
                    if slot.ready and slot.gpus == tuple(sorted(gpus)):
                        return slot
                changed = self._changed
                await changed.wait()

    @asynccontextmanager
    async def paused(self, gpus: Sequence[int] = ()) -> AsyncIterator[None]:
        """No warming while inside, and no slot on ``gpus``: for a timed challenge, whose
        figure must be the device's alone. Slots still warming are killed too (CPU time)."""
        self._pauses += 1
        try:
            held = set(gpus)
            await self._kill([s for s in self._slots if not s.ready or held & set(s.gpus)])
            yield
        finally:
            self._pauses -= 1
            self._wake.set()

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> WarmPool:
        await trio.to_thread.run_sync(remove_tree, self.directory)  # slots of a previous run
        self.directory.mkdir(parents=True, exist_ok=True)
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        self._nursery.start_soon(self._manage, name="warm sandbox pool")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None and self._nursery_cm is not None
        self._nursery.cancel_scope.cancel()
        try:
            return await self._nursery_cm.__aexit__(exc_type, exc, tb)
        finally:
            with trio.CancelScope(shield=True):
                await self._kill(list(self._slots), count=False)
                await trio.to_thread.run_sync(remove_tree, self.directory)

    # ---------------------------------------------------------------- internals
    def _take(self, job: PreparedJob) -> WarmSlot | None:
        if not warm_eligible(job):
            return None
        gpus = tuple(sorted(job.gpus))
        for slot, scope in self._slots.items():
            if slot.ready and slot.gpus == gpus and slot.alive():
                del self._slots[slot]
                scope.cancel()  # its keeper stops watching; the slot is the job's now
                self._signal()
                return slot
        return None

    async def _warmed(self, job: PreparedJob) -> WarmSlot | None:
        """A slot warming on ``job``'s GPU set that no other job waits for, taken for it
        once ready; None when there is none, it fails, or it is not ready within twice the
        last warm-up's time."""
        gpus = tuple(sorted(job.gpus))
        warming = [
            s for s in self._slots if s.gpus == gpus and not s.ready and s not in self._awaited
        ]
        if not warming or self._last_warm_up_s is None or not warm_eligible(job):
            return None
        slot = warming[0]
        waited = time.monotonic()
        self._awaited.add(slot)
        try:
            with trio.move_on_after(2 * self._last_warm_up_s):
                while slot in self._slots and not slot.ready:
                    await self._changed.wait()
        finally:
            self._awaited.discard(slot)
        taken = self._take(job)
        if taken is not None:
            self.figures.warming_waits += 1
            log.info(
                "job %s waited %.2f s for warm sandbox %s",
                job.job_id,
                time.monotonic() - waited,
                taken.name,
            )
        return taken

    def _signal(self) -> None:
        self._wake.set()
        self._changed.set()
        self._changed = trio.Event()

    async def _kill(self, victims: list[WarmSlot], *, count: bool = True) -> None:
        """Kill ``victims``; returns once every one of them is gone."""
        mine = []
        for slot in victims:
            scope = self._slots.pop(slot, None)
            if scope is not None:
                scope.cancel()
                mine.append(slot)
        if mine:
            self._signal()
            if count:
                self.figures.slots_killed += len(mine)
        for slot in victims:
            await slot.discard()  # also waits for one another task is discarding

    def _wanted_gpu_set(self) -> tuple[int, ...] | None:
        """The GPU set for the next slot, or None when no more fit."""
        if not self.devices or self.config.gpus_per_slot == 0:
            return ()
        held = {g for s in self._slots for g in s.gpus}
        # The same order in which the provider hands GPUs to jobs: lowest free first.
        free = sorted(set(self.free_gpus()) - held)
        need = self.config.gpus_per_slot
        return tuple(free[:need]) if len(free) >= need else None

    async def _manage(self) -> None:
        while True:
            self._reconcile()
            with trio.move_on_after(RECHECK_S):
                await self._wake.wait()
            self._wake = trio.Event()

    def _reconcile(self) -> None:
        assert self._nursery is not None
        free = set(self.free_gpus())
        # A slot a job waits for is on that job's GPUs, which its worker holds already.
        taken = [s for s in self._slots if not set(s.gpus) <= free and s not in self._awaited]
        if taken:  # a GPU went to a job some other way: it is the job's, not the slot's
            self._nursery.start_soon(self._kill, taken, name="warm slot kill")
            return
        if self._pauses or time.monotonic() < self._retry_at:
            return
        if len(self._slots) >= self.config.size or any(not s.ready for s in self._slots):
            return
        gpus = self._wanted_gpu_set()
        if gpus is None:
            return
        slot = WarmSlot(self.runtime, self.directory / f"slot-{self.figures.slots_started}", gpus)
        self.figures.slots_started += 1
        scope = trio.CancelScope()
        self._slots[slot] = scope
        self._nursery.start_soon(self._keep, slot, scope, name=f"warm sandbox {slot.name}")

    async def _keep(self, slot: WarmSlot, scope: trio.CancelScope) -> None:
        """Warm ``slot`` up, then watch it until it is taken, killed or dies."""
        assert slot.proc is None
        with scope:
            try:
                await slot.start(self.config.hold)
            except SandboxError as exc:
                self.figures.slots_failed += 1
                self._failed(slot, f"warm sandbox failed to start: {exc}")
                return
            except Exception:  # a bug here must not take the provider down with it
                log.exception("warm sandbox %s: unexpected failure", slot.name)
                self.figures.slots_failed += 1
                await slot.discard()
                self._failed(slot, f"warm sandbox {slot.name} failed")
                return
            self._failures = 0
            self._last_warm_up_s = slot.warm_up_s
            self._signal()
            assert slot.proc is not None
            code = await slot.proc.wait()
            if self._slots.get(slot) is scope:  # nobody took it: it died while waiting
                self.figures.slots_died += 1
                await slot.discard()
                self._failed(slot, f"warm sandbox {slot.name} exited ({code}) while idle")

    def _failed(self, slot: WarmSlot, why: str) -> None:
        self._slots.pop(slot, None)
        self._failures += 1
        delay = min(self.config.max_backoff_s, 2.0 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        log.warning("%s; next one in %.0f s (jobs start cold meanwhile)", why, delay)
        self._signal()
