"""The hourly history: typed rows, how two rows of one period merge, and their tables.

Each row is one period of one key: ``bucket`` (start, unix seconds) and ``resolution``
(:data:`HOUR`, or :data:`DAY` once merged). Every field is a sum, a count, a maximum or a
minimum (the class says which), so adding a delta to a period, or folding a week-old day of
hours into one day row, is one rule: :func:`merge`. Amounts are ints stored as decimal text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    bindparam,
    delete,
    insert,
    select,
    update,
)

from coordinator.store import tables as t

HOUR = 3600
DAY = 86_400


def hour_of(at: float) -> int:
    return int(at // HOUR) * HOUR


def day_of(at: float) -> int:
    return int(at // DAY) * DAY


@dataclass(frozen=True)
class HistoryRow:
    """One period of one key. Subclasses name their table, key, and the fields that are
    amounts (int sums kept as text), maxima and minima; every other field is summed."""

    TABLE: ClassVar[Table]
    KEY: ClassVar[tuple[str, ...]] = ()
    AMOUNTS: ClassVar[frozenset[str]] = frozenset()
    MAXES: ClassVar[frozenset[str]] = frozenset()
    MINS: ClassVar[frozenset[str]] = frozenset()
    LATEST: ClassVar[frozenset[str]] = frozenset()
    """Descriptive fields: the newest non-empty value wins."""

    bucket: int
    resolution: int

    def key(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("bucket", "resolution", *self.KEY)}

    def to_row(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in self.AMOUNTS:
            row[name] = str(row[name])
        return row

    @classmethod
    def from_row(cls: type[R], row: Any) -> R:
        m = dict(row._mapping)
        for name in cls.AMOUNTS:
            m[name] = int(m[name])
        return cls(**m)


R = TypeVar("R", bound=HistoryRow)


def merge(old: R, new: R) -> R:
    """``old`` and ``new`` (same table) folded into one row keyed like ``old``."""
    changes: dict[str, Any] = {}
    skip = {"bucket", "resolution", *old.KEY}
    for f in fields(old):
        name = f.name
        if name in skip:
            continue
        a, b = getattr(old, name), getattr(new, name)
        if name in old.LATEST:
            changes[name] = b or a
        elif name in old.MAXES:
            changes[name] = max(a, b)
        elif name in old.MINS:
            changes[name] = b if a is None else a if b is None else min(a, b)
        else:
            changes[name] = a + b
    return replace(old, **changes)


@dataclass(frozen=True)
class ProviderHour(HistoryRow):
    """A provider's period. ``gpu_*``: GPU-seconds; ``slot_*``: job-slot-seconds (what a
    CPU-only provider offers). Offered is sampled from the live book, sold is seat runtime."""

    TABLE: ClassVar[Table] = t.history_providers
    KEY: ClassVar[tuple[str, ...]] = ("address",)
    AMOUNTS: ClassVar[frozenset[str]] = frozenset({"earnings"})
    LATEST: ClassVar[frozenset[str]] = frozenset({"gpu_model"})

    address: str = ""
    gpu_model: str = ""
    gpu_offered_s: float = 0.0
    gpu_sold_s: float = 0.0
    slot_offered_s: float = 0.0
    slot_sold_s: float = 0.0
    jobs: int = 0
    """Seats that delivered a result (committed)."""
    failed_timeout: int = 0
    failed_fault: int = 0
    failed_job: int = 0
    withheld: int = 0
    slashed: int = 0
    earnings: int = 0
    """What the market paid its seats (token base units)."""

    @property
    def gpu_idle_s(self) -> float:
        return max(0.0, self.gpu_offered_s - self.gpu_sold_s)

    @property
    def slot_idle_s(self) -> float:
        return max(0.0, self.slot_offered_s - self.slot_sold_s)

    @property
    def failures(self) -> int:
        return (
            self.failed_timeout + self.failed_fault + self.failed_job + self.withheld + self.slashed
        )

    @property
    def utilization(self) -> float | None:
        """Sold over offered: GPU-seconds, or job-slot-seconds for a provider without GPUs."""
        if self.gpu_offered_s > 0:
            return min(1.0, self.gpu_sold_s / self.gpu_offered_s)
        if self.slot_offered_s > 0:
            return min(1.0, self.slot_sold_s / self.slot_offered_s)
        return None


@dataclass(frozen=True)
class RequesterHour(HistoryRow):
    TABLE: ClassVar[Table] = t.history_requesters
    KEY: ClassVar[tuple[str, ...]] = ("address",)
    AMOUNTS: ClassVar[frozenset[str]] = frozenset({"spend", "refunds", "fees"})

    address: str = ""
    jobs: int = 0
    """Jobs that ended (any way)."""
    failed: int = 0
    spend: int = 0
    """What the jobs cost: seat pay plus the coordinator's fee (escrow less refund)."""
    refunds: int = 0
    fees: int = 0
    data_bytes: int = 0
    """Bytes moved through IPFS: inputs to each seat that ran, plus the result once."""


@dataclass(frozen=True)
class MarketHour(HistoryRow):
    TABLE: ClassVar[Table] = t.history_market
    MAXES: ClassVar[frozenset[str]] = frozenset({"queue_wait_max_s"})

    jobs: int = 0
    failed: int = 0
    queue_waits: int = 0
    queue_wait_s: float = 0.0
    """Sum of the waits from ``queued`` to ``assign_tx_mined`` of jobs assigned this period."""
    queue_wait_max_s: float = 0.0

    @property
    def queue_wait_mean_s(self) -> float | None:
        return self.queue_wait_s / self.queue_waits if self.queue_waits else None


@dataclass(frozen=True)
class PriceHour(HistoryRow):
    """Price per verified TFLOP-hour (token base units) of live providers, sampled."""

    TABLE: ClassVar[Table] = t.history_prices
    KEY: ClassVar[tuple[str, ...]] = ("gpu_model", "dtype")
    MINS: ClassVar[frozenset[str]] = frozenset({"price_min"})

    gpu_model: str = ""
    dtype: str = ""
    samples: int = 0
    price_sum: float = 0.0
    price_min: float | None = None

    @property
    def price_mean(self) -> float | None:
        return self.price_sum / self.samples if self.samples else None


ROW_TYPES: tuple[type[HistoryRow], ...] = (ProviderHour, RequesterHour, MarketHour, PriceHour)
MAX_HISTORY_ROWS = 20_000
"""The most rows one read returns (the newest)."""
COMPACT_BATCH = 5_000
"""The most hour rows one compaction folds per table: it holds the store's write lock."""


def add_rows(conn: Connection, rows: Iterable[HistoryRow]) -> None:
    """Merge each row into its stored period (inserting it when the period is new).

    Per table and period: one read of the period's stored rows, one batched insert, one
    batched update, so a sample of the whole book is a handful of statements."""
    merged: dict[tuple[Any, ...], HistoryRow] = {}
    for row in rows:  # fold duplicates first: one write per period and key
        k = (type(row), *row.key().values())
        merged[k] = merge(merged[k], row) if k in merged else row
    groups: dict[tuple[type[HistoryRow], int, int], list[HistoryRow]] = {}
    for row in merged.values():
        groups.setdefault((type(row), row.bucket, row.resolution), []).append(row)
    for (kind, bucket, resolution), batch in groups.items():
        table = kind.TABLE
        period = (table.c.bucket == bucket) & (table.c.resolution == resolution)
        stored = {
            tuple(found.key().values()): found
            for found in (kind.from_row(r) for r in conn.execute(select(table).where(period)))
        }
        fresh, changed = [], []
        for row in batch:
            old = stored.get(tuple(row.key().values()))
            if old is None:
                fresh.append(row.to_row())
            else:
                changed.append(merge(old, row).to_row())
        if fresh:
            conn.execute(insert(table), fresh)
        if changed:
            conn.execute(_update_by_key(kind), [_keyed(kind, r) for r in changed])


def _key_clause(kind: type[HistoryRow]) -> ColumnElement[bool]:
    """``bucket = :key_bucket AND ...`` over the row's key, for batched statements."""
    table = kind.TABLE
    return and_(*(table.c[n] == bindparam(f"key_{n}") for n in ("bucket", "resolution", *kind.KEY)))


def _update_by_key(kind: type[HistoryRow]) -> Any:
    table = kind.TABLE
    names = ("bucket", "resolution", *kind.KEY)
    values: dict[str, Any] = {c.name: bindparam(c.name) for c in table.c if c.name not in names}
    return update(table).where(_key_clause(kind)).values(**values)


def _keyed(kind: type[HistoryRow], row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("bucket", "resolution", *kind.KEY)}
    for name in ("bucket", "resolution", *kind.KEY):
        out[f"key_{name}"] = row[name]
    return out


def read_rows(
    conn: Connection,
    kind: type[R],
    since: float,
    until: float | None = None,
    **key: Any,
) -> list[R]:
    table = kind.TABLE
    query = select(table).where(table.c.bucket >= int(since))
    if until is not None:
        query = query.where(table.c.bucket < int(until))
    for name, value in key.items():
        query = query.where(table.c[name] == value)
    # Past the cap the newest periods are the ones kept.
    query = query.order_by(table.c.bucket.desc()).limit(MAX_HISTORY_ROWS)
    return [kind.from_row(r) for r in conn.execute(query)][::-1]


def compact(conn: Connection, now: float, keep_hours_s: float, retention_s: float) -> int:
    """Fold hour rows older than ``keep_hours_s`` into day rows and delete periods older
    than ``retention_s``; returns how many rows went away. Only whole past days are folded."""
    fold_before = day_of(now - keep_hours_s)
    drop_before = int(now - retention_s)
    gone = 0
    for kind in ROW_TYPES:
        table = kind.TABLE
        result = conn.execute(delete(table).where(table.c.bucket < drop_before))
        gone += int(result.rowcount or 0)
        old = select(table).where(table.c.resolution == HOUR, table.c.bucket < fold_before)
        hours = [kind.from_row(r) for r in conn.execute(old.limit(COMPACT_BATCH))]
        if not hours:
            continue
        add_rows(conn, [replace(h, bucket=day_of(h.bucket), resolution=DAY) for h in hours])
        conn.execute(
            delete(table).where(_key_clause(kind)),
            [{f"key_{n}": v for n, v in h.key().items()} for h in hours],
        )
        gone += len(hours)
    return gone


def summed(rows: Sequence[R]) -> list[R]:
    """Rows of the same key and bucket folded together (e.g. hour rows listed by key)."""
    out: dict[tuple[Any, ...], R] = {}
    for row in rows:
        k = tuple(row.key().values())
        out[k] = merge(out[k], row) if k in out else row
    return list(out.values())
