"""The provider book in columns: one numpy array per attribute, one slot per provider.

Matching filters and scores every provider at once over these arrays, so a match over
10,000 providers costs tens of microseconds of vectorized work instead of a Python loop.
An advert updates its provider's slot in place; a provider that leaves frees its slot for
the next newcomer. Every change records the slot it touched (:meth:`changed_since`), so a
reader that derives per-slot figures (the matcher's scores) redoes only those slots. Reads
and writes happen on the trio thread only.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from protocol.compat import Platform

DTYPE_INDEX = {"fp32": 0, "tf32": 1, "fp16": 2, "bf16": 3}
RUNTIME_BITS = {"torch": 1, "container": 2}
MAX_JOB_SLOTS = 64
CHANGE_LOG_MIN = 4096
ENVIRONMENT_SLACK = 64
"""Python environments (and GPU platforms) kept beyond twice the live providers before
unused ones are dropped."""
"""The change log is forgotten once it holds this many entries (or twice the capacity, if
more); a reader further behind than that starts over."""
ADVERT_LAG_S = 1.0
"""How long after a change at a provider its adverts may still show the state before it."""


NO_GPU = Platform(vendor=None, models=())


@dataclass(frozen=True)
class AdvertRow:
    """What one advert says, flattened for the columns (amounts in token units)."""

    address: str
    peer_id: str
    multiaddrs: tuple[str, ...]
    gpu_count: int
    free_gpus: int
    gpu_memory_bytes: int
    tflops: Mapping[str, float]
    rate_per_gpu_hour: int
    rate_per_cpu_hour: int
    """What a seat of a job asking for no GPU is billed per hour."""
    runtimes: Sequence[str]
    fingerprint: str
    utilization: float
    seen_at: float
    packages: Mapping[str, str] = field(default_factory=dict)
    """Python distributions the torch runtime offers, name to version."""
    platform: Platform = field(default_factory=lambda: NO_GPU)
    """Its GPUs' vendor, models, compute capability, driver and CUDA versions."""
    max_queued: int = 0
    """Jobs it accepts beyond its running ones, to wait for a slot (its advert's
    ``max_queued``; 0 when the advert does not say)."""
    max_input_bytes: int | None = None
    """The most input bytes it fetches for one job (its advert's ``max_input_bytes``);
    None: no limit stated."""


V = TypeVar("V")


class CodeTable(Generic[V]):
    """Distinct values many providers share (a Python environment, a GPU platform), each
    numbered once, so a verdict on a value is reached once per value, not per provider.
    ``epoch`` rises whenever codes are renumbered: verdicts kept by code are then stale."""

    def __init__(self) -> None:
        self.codes: dict[Hashable, int] = {}
        self.values: list[V] = []
        self.epoch = 0

    def code(self, key: Hashable) -> int | None:
        """``key``'s code, or None when it is new (then :meth:`add` it)."""
        return self.codes.get(key)

    def add(self, key: Hashable, value: V) -> int:
        code = len(self.values)
        self.codes[key] = code
        self.values.append(value)
        return code

    def keep_only(self, used: Sequence[int], key_of: dict[int, Hashable]) -> dict[int, int]:
        """Keep the values of codes ``used`` (keys from ``key_of``), renumbered; returns
        old code -> new code."""
        keep = sorted(set(used) - {-1})
        renumber = {old: new for new, old in enumerate(keep)}
        self.values = [self.values[old] for old in keep]
        self.codes = {key_of[old]: renumber[old] for old in keep}
        self.epoch += 1
        return renumber


class ProviderColumns:
    """Arrays indexed by slot, with the address <-> slot map beside them."""

    def __init__(self, capacity: int = 64) -> None:
        self._slot_of: dict[str, int] = {}
        self._free: list[int] = []
        self.size = 0  # slots ever used (alive or not)
        self._changes: list[int] = []  # slots touched, oldest first
        self._changes_base = 0  # change number of _changes[0]
        self.addresses: list[str] = []
        self.peer_ids: list[str] = []
        self.multiaddrs: list[tuple[str, ...]] = []
        self.rates: list[int] = []
        self.cpu_rates: list[int] = []
        self.fingerprint_codes: dict[str, int] = {}
        self.fingerprint_names: list[str] = []
        # Providers with the same Python packages (GPU platform) share one code.
        self.environment_table: CodeTable[dict[str, str]] = CodeTable()
        self.platform_table: CodeTable[Platform] = CodeTable()
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        def grow(
            old: np.ndarray | None, shape: tuple[int, ...], dtype: type, fill: float
        ) -> np.ndarray:
            # Column-major: a match reads one dtype's column (tflops) over every slot.
            new: np.ndarray = np.full(shape, fill, dtype=dtype, order="F")
            if old is not None:
                new[: old.shape[0]] = old
            return new

        get = self.__dict__.get
        self.capacity = capacity
        self.alive = grow(get("alive"), (capacity,), np.bool_, False)
        self.gpu_count = grow(get("gpu_count"), (capacity,), np.int32, 0)
        self.free_gpus = grow(get("free_gpus"), (capacity,), np.int32, 0)
        self.inflight_gpus = grow(get("inflight_gpus"), (capacity,), np.int32, 0)
        self.inflight_since = grow(get("inflight_since"), (capacity,), np.float64, 0)
        self.gpu_memory = grow(get("gpu_memory"), (capacity,), np.float64, 0)
        self.tflops = grow(get("tflops"), (capacity, len(DTYPE_INDEX)), np.float64, 0)
        self.measured = grow(get("measured"), (capacity, len(DTYPE_INDEX)), np.bool_, False)
        self.rate = grow(get("rate"), (capacity,), np.float64, 0)
        self.cpu_rate = grow(get("cpu_rate"), (capacity,), np.float64, 0)
        self.runtime_bits = grow(get("runtime_bits"), (capacity,), np.uint8, 0)
        self.fingerprint = grow(get("fingerprint"), (capacity,), np.int32, -1)
        self.environment = grow(get("environment"), (capacity,), np.int32, -1)
        self.platform = grow(get("platform"), (capacity,), np.int32, -1)
        self.group = grow(get("group"), (capacity,), np.int64, 0)
        self.free_stake = grow(get("free_stake"), (capacity,), np.float64, -1)
        self.reputation = grow(get("reputation"), (capacity,), np.float64, 0)
        self.newcomer = grow(get("newcomer"), (capacity,), np.bool_, True)
        self.utilization = grow(get("utilization"), (capacity,), np.float64, 0)
        self.seen_at = grow(get("seen_at"), (capacity,), np.float64, 0)
        # Job slots: what the provider's adverts say against what this coordinator holds.
        self.job_capacity = grow(get("job_capacity"), (capacity,), np.int32, 1)
        self.advert_running = grow(get("advert_running"), (capacity,), np.int32, 0)
        self.reserved_jobs = grow(get("reserved_jobs"), (capacity,), np.int32, 0)
        self.reserved_at = grow(get("reserved_at"), (capacity,), np.float64, 0)
        self.released_at = grow(get("released_at"), (capacity,), np.float64, 0)
        self.full_since = grow(get("full_since"), (capacity,), np.float64, 0)
        self.max_queued = grow(get("max_queued"), (capacity,), np.int32, 0)
        # Kept by every write to the figures above (:meth:`_count_free`).
        self.free_job_slots = grow(get("free_job_slots"), (capacity,), np.int64, 1)
        # Exact in float64: adverts bound the limit to 2**50.
        self.max_input = grow(get("max_input"), (capacity,), np.float64, np.inf)

    def _touch(self, slot: int) -> None:
        if len(self._changes) >= max(CHANGE_LOG_MIN, 2 * self.capacity):
            self._changes_base += len(self._changes)
            self._changes = []
        self._changes.append(slot)

    @property
    def version(self) -> int:
        """The number of changes so far: equal versions mean an unchanged book. Pass it
        to :meth:`changed_since` later to learn what changed in between."""
        return self._changes_base + len(self._changes)

    def changed_since(self, cursor: int) -> list[int] | None:
        """Slots changed after version ``cursor`` (repeats possible); None when those
        changes are no longer remembered and everything must be treated as changed."""
        if cursor < self._changes_base:
            return None
        return self._changes[cursor - self._changes_base :]

    def changed_slots(self, cursor: int) -> np.ndarray | None:
        """:meth:`changed_since` as distinct slots, ascending (int64); None as there."""
        changed = self.changed_since(cursor)
        if changed is None:
            return None
        # sorted(set()) beats np.unique by several times on the few slots a match sees.
        return np.array(sorted(set(changed)), dtype=np.int64)

    def __len__(self) -> int:
        return len(self._slot_of)

    def slot(self, address: str) -> int | None:
        return self._slot_of.get(address)

    def live_addresses(self) -> list[str]:
        return list(self._slot_of)

    def fingerprint_code(self, name: str) -> int:
        code = self.fingerprint_codes.get(name)
        if code is None:
            code = len(self.fingerprint_names)
            self.fingerprint_codes[name] = code
            self.fingerprint_names.append(name)
        return code

    @property
    def environments(self) -> list[dict[str, str]]:
        return self.environment_table.values

    @property
    def environments_epoch(self) -> int:
        return self.environment_table.epoch

    @property
    def platforms(self) -> list[Platform]:
        return self.platform_table.values

    def environment_code(self, packages: Mapping[str, str]) -> int:
        key = tuple(sorted(packages.items()))
        code = self.environment_table.code(key)
        if code is None:
            code = self._add("environment", self.environment_table, key, dict(key))
        return code

    def platform_code(self, platform: Platform) -> int:
        code = self.platform_table.code(platform)
        if code is None:
            code = self._add("platform", self.platform_table, platform, platform)
        return code

    def _add(self, column: str, table: CodeTable[V], key: Hashable, value: V) -> int:
        if len(table.values) >= 2 * len(self._slot_of) + ENVIRONMENT_SLACK:
            self._drop_unused(column, table)
        return table.add(key, value)

    def _drop_unused(self, column: str, table: CodeTable[V]) -> None:
        """Keep only the codes live providers use, renumbered: a provider that changes its
        package list (or platform) with every advert cannot grow a table without bound."""
        live = list(self._slot_of.values())
        old_codes: np.ndarray = getattr(self, column)
        key_of = {code: key for key, code in table.codes.items()}
        renumber = table.keep_only([int(old_codes[s]) for s in live], key_of)
        codes = np.full(self.capacity, -1, dtype=np.int32)
        for s in live:
            codes[s] = renumber.get(int(old_codes[s]), -1)
        setattr(self, column, codes)

    def upsert(self, offer: AdvertRow) -> int:
        """Write ``offer`` into its provider's slot (allocating one for a newcomer)."""
        slot = self._slot_of.get(offer.address)
        if slot is None:
            slot = self._new_slot(offer.address)
        self._touch(slot)
        self.peer_ids[slot] = offer.peer_id
        self.multiaddrs[slot] = offer.multiaddrs
        self.rates[slot] = offer.rate_per_gpu_hour
        self.cpu_rates[slot] = offer.rate_per_cpu_hour
        self.alive[slot] = True
        self.gpu_count[slot] = offer.gpu_count
        self.free_gpus[slot] = offer.free_gpus
        self.gpu_memory[slot] = offer.gpu_memory_bytes
        for dtype, i in DTYPE_INDEX.items():
            # A verified challenge result outranks whatever the provider now claims.
            if not self.measured[slot, i]:
                self.tflops[slot, i] = float(offer.tflops.get(dtype, 0.0))
        self.rate[slot] = float(offer.rate_per_gpu_hour)
        self.cpu_rate[slot] = float(offer.rate_per_cpu_hour)
        bits = 0
        for runtime in offer.runtimes:
            bits |= RUNTIME_BITS.get(runtime, 0)
        self.runtime_bits[slot] = bits
        self.fingerprint[slot] = self.fingerprint_code(offer.fingerprint)
        self.environment[slot] = self.environment_code(offer.packages)
        self.platform[slot] = self.platform_code(offer.platform)
        self.utilization[slot] = offer.utilization
        self.max_queued[slot] = max(0, min(MAX_JOB_SLOTS, offer.max_queued))
        limit = offer.max_input_bytes
        self.max_input[slot] = np.inf if limit is None else float(limit)
        self.seen_at[slot] = offer.seen_at
        self._read_job_slots(slot, offer.utilization, offer.seen_at)
        self._count_free(slot)
        return slot

    def _read_job_slots(self, slot: int, utilization: float, now: float) -> None:
        """Learn the provider's job capacity and how many jobs its advert says it runs.

        Adverts carry ``utilization`` = running / max jobs. Once an advert is newer than
        this coordinator's last reservation there by :data:`ADVERT_LAG_S`, it runs at least
        the jobs held here, so max >= held / utilization; the estimate only grows (a
        "busy" refusal marks the provider full instead of shrinking it). A full provider
        (utilization 1) teaches nothing: the jobs held there may wait in its queue.
        """
        held = int(self.reserved_jobs[slot])
        if 0 < utilization < 1 and now - self.reserved_at[slot] > ADVERT_LAG_S:
            estimate = round(max(held, 1) / utilization)
            known = int(self.job_capacity[slot])
            self.job_capacity[slot] = min(MAX_JOB_SLOTS, max(known, estimate))
        self.advert_running[slot] = round(utilization * int(self.job_capacity[slot]))

    def free_jobs(self) -> np.ndarray:
        """Job slots free per provider: capacity minus held jobs and jobs its adverts show.

        An advert counts only when newer than this coordinator's last release there (by
        :data:`ADVERT_LAG_S`): an older one still shows the released job as running. A
        provider that refused as busy after its last advert has no free slot. Kept per slot
        by each write that changes one of these figures (read-only: share it).
        """
        return self.free_job_slots[: self.size]

    def _count_free(self, slot: int) -> None:
        """:meth:`free_jobs` of ``slot``, worked out again after a write there (what
        :meth:`_free_jobs_of` says, in scalars: a write touches one slot)."""
        seen = float(self.seen_at[slot])
        if float(self.full_since[slot]) >= seen:
            self.free_job_slots[slot] = 0
            return
        running = int(self.reserved_jobs[slot])
        if seen > float(self.released_at[slot]) + ADVERT_LAG_S:
            running = max(running, int(self.advert_running[slot]))
        self.free_job_slots[slot] = int(self.job_capacity[slot]) - running

    def _free_jobs_of(self, at: slice | np.ndarray) -> np.ndarray:
        held = self.reserved_jobs[at]
        fresh = self.seen_at[at] > self.released_at[at] + ADVERT_LAG_S
        running = np.where(fresh, np.maximum(held, self.advert_running[at]), held)
        free = (self.job_capacity[at] - running).astype(np.int64)
        result: np.ndarray = np.where(self.full_since[at] >= self.seen_at[at], 0, free)
        return result

    def _new_slot(self, address: str) -> int:
        if self._free:
            slot = self._free.pop()
            self.addresses[slot] = address
        else:
            if self.size == self.capacity:
                self._allocate(self.capacity * 2)
            slot = self.size
            self.size += 1
            self.addresses.append(address)
            self.peer_ids.append("")
            self.multiaddrs.append(())
            self.rates.append(0)
            self.cpu_rates.append(0)
        self._slot_of[address] = slot
        # A newcomer's facts from the chain and challenges are unknown until refreshed.
        self.free_stake[slot] = -1
        self.group[slot] = 0
        self.reputation[slot] = 0
        self.newcomer[slot] = True
        self.inflight_gpus[slot] = 0
        self.measured[slot] = False
        self.job_capacity[slot] = 1
        self.advert_running[slot] = 0
        self.reserved_jobs[slot] = 0
        self.reserved_at[slot] = 0
        self.released_at[slot] = 0
        self.full_since[slot] = 0
        return slot

    def remove(self, address: str) -> bool:
        slot = self._slot_of.pop(address, None)
        if slot is None:
            return False
        self._touch(slot)
        self.alive[slot] = False
        self._free.append(slot)
        return True

    def set_stake(self, address: str, free_stake: int, group: int) -> None:
        slot = self._slot_of.get(address)
        if slot is not None:
            self._touch(slot)
            self.free_stake[slot] = float(free_stake)
            self.group[slot] = group

    def set_reputation(self, address: str, lower_bound: float, newcomer: bool) -> None:
        slot = self._slot_of.get(address)
        if slot is not None:
            self._touch(slot)
            self.reputation[slot] = lower_bound
            self.newcomer[slot] = newcomer

    def set_measured(self, address: str, dtype: str, tflops: float) -> None:
        slot = self._slot_of.get(address)
        if slot is not None and dtype in DTYPE_INDEX:
            self._touch(slot)
            self.tflops[slot, DTYPE_INDEX[dtype]] = tflops
            self.measured[slot, DTYPE_INDEX[dtype]] = True

    def set_reserved(self, address: str, jobs: int, now: float) -> None:
        """Record how many jobs this coordinator holds at the provider (planned or running)."""
        slot = self._slot_of.get(address)
        if slot is None:
            return
        self._touch(slot)
        before = int(self.reserved_jobs[slot])
        self.reserved_jobs[slot] = jobs
        if jobs > before:
            self.reserved_at[slot] = now
        elif jobs < before:
            self.released_at[slot] = now
            self.full_since[slot] = 0  # one of ours just finished there: a slot is free
        self._count_free(slot)

    def mark_full(self, address: str, now: float) -> None:
        """The provider refused a job as busy: no free slot until its next advert."""
        slot = self._slot_of.get(address)
        if slot is not None:
            self._touch(slot)
            self.full_since[slot] = now
            self._count_free(slot)

    def add_inflight(self, address: str, gpus: int, now: float = 0.0) -> None:
        """Count GPUs this coordinator just gave away, until the provider's adverts show it."""
        slot = self._slot_of.get(address)
        if slot is not None:
            self._touch(slot)
            self.inflight_gpus[slot] = max(0, int(self.inflight_gpus[slot]) + gpus)
            if gpus > 0:
                self.inflight_since[slot] = now

    def settle_inflight(self, address: str, now: float, grace_s: float) -> None:
        """An advert newer than the assignment by ``grace_s`` already counts those GPUs."""
        slot = self._slot_of.get(address)
        if (
            slot is not None
            and self.inflight_gpus[slot]
            and now - self.inflight_since[slot] > grace_s
        ):
            self.inflight_gpus[slot] = 0
            self._touch(slot)
