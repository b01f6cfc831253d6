"""What the market did, hour by hour: figures the coordinator records from what it knows.

Two sources, both into :mod:`coordinator.store.history`:

- **Samples** of the live book every ``sample_s`` (held in memory, written every
  ``flush_s``): each registered provider offers its GPUs (GPU-seconds) and its job slots
  (slot-seconds, what a CPU-only provider sells) for the time since the last sample; each
  verified TFLOPS figure gives a price per verified TFLOP-hour for its GPU model and dtype.
- **Ended jobs**, each exactly once (the store marks the job in the same transaction): per
  seat the runtime it revealed (sold seconds, placed just before the job's last move to
  ``committed``), whether it delivered, why it failed, what it was paid; per requester the
  job, its spend (seat pay plus fee when settled), refund and the data it moved (its inputs
  once per seat that ran, plus its result once; sizes read from IPFS, within a deadline);
  market-wide the queue wait (``queued`` to ``assign_tx_mined``).

Phase timings of a job (:func:`phases`) come from its stored transitions plus ``matched_at``.
The same figures go to Prometheus counters (:class:`coordinator.metrics.HistoryMetrics`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from coordinator.matching.book import ProviderBook
from coordinator.matching.columns import DTYPE_INDEX
from coordinator.metrics import HistoryMetrics
from coordinator.store import AsyncStore, EventRecord, JobRecord, ProviderSlot, SeatFailure
from coordinator.store.history import (
    HOUR,
    HistoryRow,
    MarketHour,
    PriceHour,
    ProviderHour,
    RequesterHour,
    hour_of,
    merge,
)
from coordinator.tasks import contained
from coordinator.verification.reputation import recordable
from protocol.errors import GpuMarketError
from protocol.ipfs.store import ContentStore
from protocol.lifecycle import PHASE_OF_STATE, JobState, Outcome, Phase, SeatState
from protocol.registry import MAX_SPEC_BYTES
from protocol.spec import JobSpec
from protocol.spec_io import parse_spec

log = logging.getLogger(__name__)

WEEK_S = 7 * 86_400
PAID_STATES = frozenset({JobState.SETTLED, JobState.FINALIZED})
FAILED_STATES = frozenset({JobState.FAILED, JobState.RECLAIMED})


@dataclass(frozen=True)
class HistoryConfig:
    sample_s: float = 10.0
    """How often the live book is sampled for offered seconds and prices."""
    keep_hours_s: float = WEEK_S
    """Hour rows older than this are folded into day rows."""
    retention_s: float = 90 * 86_400
    """Periods older than this are deleted."""
    compact_s: float = 600.0
    """How often week-old hours are folded (a bounded batch each time)."""
    flush_s: float = 60.0
    """Samples are held in memory and written this often (and when the recorder stops)."""
    size_timeout_s: float = 10.0
    """How long reading a job's input and result sizes from IPFS may take (else 0 moved)."""


def phases(job: JobRecord, events: list[EventRecord]) -> dict[Phase, float]:
    """When the job first reached each phase (coordinator clock); phases not reached are absent."""
    out: dict[Phase, float] = {Phase.QUEUED: job.created_at}
    if job.matched_at is not None:
        out[Phase.MATCHED] = job.matched_at
    for event in events:
        phase = PHASE_OF_STATE.get(event.state)
        if phase is not None and phase not in out:
            out[phase] = event.at
    return out


def spread(start: float, end: float) -> list[tuple[int, float]]:
    """``[start, end)`` cut at hour boundaries: (hour, seconds in it)."""
    out: list[tuple[int, float]] = []
    at = start
    while at < end:
        hour = hour_of(at)
        stop = min(end, hour + HOUR)
        out.append((hour, stop - at))
        at = stop
    return out


def _runtime_s(slot: ProviderSlot) -> float:
    ms = slot.runtime_ms if slot.runtime_ms is not None else slot.onchain_runtime_ms
    return 0.0 if ms is None else ms / 1000.0


def _job_gpus(job: JobRecord) -> int:
    req = job.requirements or {}
    gpus = req.get("gpus", 0)
    return gpus if isinstance(gpus, int) and gpus >= 0 else 0


def seat_rows(
    job: JobRecord, slot: ProviderSlot, ran_until: float, hour: int
) -> list[ProviderHour]:
    """One ended job's seat, as its provider's history sees it."""
    if not slot.state.on_chain:
        return []
    runtime = _runtime_s(slot)
    gpus = _job_gpus(job)
    rows = [
        ProviderHour(h, HOUR, address=slot.address, gpu_sold_s=gpus * s, slot_sold_s=s)
        for h, s in spread(ran_until - runtime, ran_until)
    ]
    revealed = slot.state is SeatState.REVEALED or slot.onchain_revealed
    rows.append(
        ProviderHour(
            hour,
            HOUR,
            address=slot.address,
            jobs=int(slot.committed),
            failed_timeout=int(not slot.committed and slot.failure is SeatFailure.TIMEOUT),
            failed_fault=int(not slot.committed and slot.failure is SeatFailure.FAULT),
            failed_job=int(not slot.committed and slot.failure is SeatFailure.JOB),
            withheld=int(slot.committed and not revealed and slot.outcome is not Outcome.PAID),
            slashed=int(slot.outcome is Outcome.SLASHED),
            earnings=slot.pay or 0,
        )
    )
    return rows


def ran(slot: ProviderSlot) -> bool:
    """The seat fetched the job's inputs: it ran the job (committed, or failed running)."""
    return slot.committed or slot.state is SeatState.RUNNING or slot.runtime_ms is not None


def job_rows(
    job: JobRecord, slots: list[ProviderSlot], events: list[EventRecord], data_bytes: int = 0
) -> list[HistoryRow]:
    """Everything an ended job adds to the history."""
    ended_at = events[-1].at if events else job.updated_at
    hour = hour_of(ended_at)
    committed_at = [e.at for e in events if e.state is JobState.COMMITTED]
    ran_until = committed_at[-1] if committed_at else ended_at
    rows: list[HistoryRow] = []
    for slot in slots:
        rows.extend(seat_rows(job, slot, ran_until, hour))
    pay = sum(s.pay or 0 for s in slots)
    paid = job.state in PAID_STATES
    failed = job.state in FAILED_STATES
    rows.append(
        RequesterHour(
            hour,
            HOUR,
            address=job.requester,
            jobs=1,
            failed=int(failed),
            spend=pay + job.fee if paid else 0,
            refunds=job.refund or 0,
            fees=job.fee if paid else 0,
            data_bytes=data_bytes,
        )
    )
    rows.append(MarketHour(hour, HOUR, jobs=1, failed=int(failed)))
    when = phases(job, events)
    if Phase.ASSIGN_TX_MINED in when:
        wait = max(0.0, when[Phase.ASSIGN_TX_MINED] - when[Phase.QUEUED])
        rows.append(
            MarketHour(
                hour_of(when[Phase.ASSIGN_TX_MINED]),
                HOUR,
                queue_waits=1,
                queue_wait_s=wait,
                queue_wait_max_s=wait,
            )
        )
    return rows


def book_rows(book: ProviderBook, now: float, dt: float) -> list[HistoryRow]:
    """What the live book offered over the last ``dt`` seconds, and its prices now."""
    rows: list[HistoryRow] = []
    cols = book.columns
    for address, entry in book.entries.items():
        if not entry.registered:
            continue
        advert = entry.advert
        model = advert.fingerprint.gpu_model or ("cpu" if advert.cpu_only else "")
        slot = cols.slot(address)
        capacity = 1 if slot is None else int(cols.job_capacity[slot])
        if dt > 0:
            for h, s in spread(now - dt, now):
                rows.append(
                    ProviderHour(
                        h,
                        HOUR,
                        address=address,
                        gpu_model=model,
                        gpu_offered_s=len(advert.gpus) * s,
                        slot_offered_s=capacity * s,
                    )
                )
        if slot is None or advert.cpu_only:
            continue
        for dtype, i in DTYPE_INDEX.items():
            tflops = float(cols.tflops[slot, i])
            if cols.measured[slot, i] and tflops > 0 and math.isfinite(tflops):
                price = int(advert.price_per_gpu_hour) / tflops
                rows.append(
                    PriceHour(
                        hour_of(now),
                        HOUR,
                        gpu_model=model,
                        dtype=dtype,
                        samples=1,
                        price_sum=price,
                        price_min=price,
                    )
                )
    return rows


class HistoryRecorder:
    """Samples the book, records ended jobs once, folds old hours: see the module docstring."""

    def __init__(
        self,
        store: AsyncStore,
        book: ProviderBook,
        clock: Callable[[], float],
        *,
        metrics: HistoryMetrics | None = None,
        config: HistoryConfig | None = None,
        content: ContentStore | None = None,
    ) -> None:
        self.content = content
        """Where input and result sizes are read (None: data moved is not recorded)."""
        self.store = store
        self.book = book
        self.clock = clock
        self.metrics = metrics
        self.config = config or HistoryConfig()
        self._last_sample: float | None = None
        self._pending: dict[tuple[Any, ...], HistoryRow] = {}

    async def record_job(self, job: JobRecord) -> bool:
        """Add an ended job's figures (idempotent); False while it has not ended, or when
        it was recorded already."""
        if not recordable(job) or job.history_recorded:
            return False
        slots = await self.store.slots(job.job_id)
        events = await self.store.events(job.job_id)
        rows = job_rows(job, slots, events, await self.data_moved(job, slots))
        if not await self.store.record_history(job.job_id, rows):
            return False
        if self.metrics is not None:
            self.metrics.job_recorded(job, rows, phases(job, events))
        return True

    async def data_moved(self, job: JobRecord, slots: list[ProviderSlot]) -> int:
        """Bytes the job moved through IPFS: its inputs to every seat that ran, its result
        once; what cannot be read in time counts 0."""
        if self.content is None:
            return 0
        moved = 0
        with trio.move_on_after(self.config.size_timeout_s):
            spec = await self._spec(job.spec_cid)
            if spec is not None:
                for cid in spec.input_cids().values():
                    moved += (await self._size(cid) or 0) * sum(1 for s in slots if ran(s))
            if job.result_cid is not None:
                moved += await self._size(job.result_cid) or 0
        return moved

    async def _spec(self, cid: str) -> JobSpec | None:
        assert self.content is not None
        try:
            return parse_spec(await self.content.read_bytes(cid, max_size=MAX_SPEC_BYTES))
        except GpuMarketError as exc:
            log.info("spec %s unreadable for the history: %s", cid, exc)
            return None

    async def _size(self, cid: str) -> int | None:
        assert self.content is not None
        try:
            return await self.content.size(cid)
        except GpuMarketError as exc:
            log.info("size of %s unknown for the history: %s", cid, exc)
            return None

    async def sample(self) -> None:
        """Offered seconds since the previous sample (none for the first one, and a gap
        longer than two periods counts only two) and the prices of now, held in memory
        (folded per period and key) until :meth:`flush`."""
        now = self.clock()
        last, self._last_sample = self._last_sample, now
        dt = 0.0 if last is None else min(max(0.0, now - last), 2 * self.config.sample_s)
        rows = book_rows(self.book, now, dt)
        for row in rows:
            k = (type(row), *row.key().values())
            held = self._pending.get(k)
            self._pending[k] = row if held is None else merge(held, row)
        if self.metrics is not None:
            self.metrics.sampled(rows)

    async def flush(self) -> int:
        """Write the samples held so far; returns how many period rows were written."""
        rows, self._pending = list(self._pending.values()), {}
        if rows:
            await self.store.add_history(rows)
        return len(rows)

    async def catch_up(self) -> int:
        """Record jobs that ended while no recorder ran (before a restart)."""
        done = 0
        for job_id in await self.store.unrecorded_history():
            done += await self.record_job(await self.store.get_job(job_id))
        return done

    async def run(self) -> None:
        with contained(log, "history catch-up failed"):
            await self.catch_up()
        next_compact = next_flush = 0.0
        try:
            while True:
                with contained(log, "history sample failed"):
                    await self.sample()
                if self.clock() >= next_flush:
                    with contained(log, "history flush failed"):
                        await self.flush()
                    next_flush = self.clock() + self.config.flush_s
                if self.clock() >= next_compact:
                    next_compact = self.clock() + self.config.compact_s
                    await self._compact()
                await trio.sleep(self.config.sample_s)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                with contained(log, "history flush at exit failed"):
                    await self.flush()

    async def _compact(self) -> None:
        with contained(log, "history compaction failed"):
            gone = await self.store.compact_history(
                self.config.keep_hours_s, self.config.retention_s
            )
            if gone:
                log.info("history: %d old rows folded or dropped", gone)
