"""The store: every job, assignment, event, log line, cursor and reputation the coordinator keeps.

Each method is one database transaction. :meth:`Store.transition` is the only way a job
changes state: it checks the lifecycle, updates the row and appends the event in the same
transaction, so the state and its history never disagree and a transition is durable
before the caller performs the side effect it announces.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import trio
from sqlalchemy import Connection, Engine, create_engine, false, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from coordinator.errors import InvalidTransition, Unavailable, UnknownJob
from coordinator.store import history as h
from coordinator.store import tables as t
from coordinator.store.migrate import upgrade
from coordinator.store.records import (
    DeclineRecord,
    EventRecord,
    JobRecord,
    LogLine,
    ProviderSlot,
    ReputationRecord,
)
from protocol.lifecycle import FINAL, OFF_CHAIN, JobState, SeatState, allowed, seat_allowed

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R", bound=h.HistoryRow)
ReputationUpdate = Callable[[ReputationRecord | None], ReputationRecord]

MAX_LOG_LINES_PER_JOB = 10_000
MAX_LIST = 1000


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    return create_engine(url, pool_pre_ping=True)


class Store:
    """Synchronous store over one engine; safe to call from several threads."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._clock = clock
        # SQLite allows one writer; serializing here avoids "database is locked" retries.
        self._lock: threading.Lock | None = threading.Lock() if url.startswith("sqlite") else None
        with self._errors("migrate"):
            upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise Unavailable("database", f"{what}: {type(exc).__name__}: {exc}") from exc

    @contextmanager
    def _tx(self, what: str) -> Iterator[Connection]:
        with self._errors(what):
            if self._lock is None:
                with self.engine.begin() as conn:
                    yield conn
            else:
                with self._lock, self.engine.begin() as conn:
                    yield conn

    # ------------------------------------------------------------------ jobs
    def add_job(
        self, job: JobRecord, detail: dict[str, Any] | None = None
    ) -> tuple[JobRecord, bool]:
        """Insert ``job`` unless known; returns the stored record and whether it was new."""
        with self._tx("add job") as conn:
            existing = conn.execute(select(t.jobs).where(t.jobs.c.job_id == job.job_id)).first()
            if existing is not None:
                return JobRecord.from_row(existing), False
            try:
                conn.execute(insert(t.jobs).values(**job.to_row()))
            except IntegrityError:  # inserted concurrently (PostgreSQL)
                row = conn.execute(select(t.jobs).where(t.jobs.c.job_id == job.job_id)).one()
                return JobRecord.from_row(row), False
            self._event(conn, job.job_id, job.state, job.created_at, detail or {})
            return job, True

    def get_job(self, job_id: str) -> JobRecord:
        with self._tx("read job") as conn:
            return self._job(conn, job_id)

    def find_job(self, job_id: str) -> JobRecord | None:
        with self._tx("read job") as conn:
            row = conn.execute(select(t.jobs).where(t.jobs.c.job_id == job_id)).first()
            return None if row is None else JobRecord.from_row(row)

    def list_jobs(
        self, *, requester: str | None = None, state: JobState | None = None, limit: int = 100
    ) -> list[JobRecord]:
        query = select(t.jobs).order_by(t.jobs.c.created_at.desc()).limit(min(limit, MAX_LIST))
        if requester is not None:
            query = query.where(t.jobs.c.requester == requester)
        if state is not None:
            query = query.where(t.jobs.c.state == str(state))
        with self._tx("list jobs") as conn:
            return [JobRecord.from_row(r) for r in conn.execute(query)]

    def open_jobs(self) -> list[JobRecord]:
        """Jobs the chain may still move (everything not final), oldest first."""
        query = (
            select(t.jobs)
            .where(t.jobs.c.state.not_in([str(s) for s in FINAL]))
            .order_by(t.jobs.c.created_at)
        )
        with self._tx("list open jobs") as conn:
            return [JobRecord.from_row(r) for r in conn.execute(query)]

    def count_by_state(self) -> dict[str, int]:
        query = select(t.jobs.c.state, func.count()).group_by(t.jobs.c.state)
        with self._tx("count jobs") as conn:
            return {str(state): int(n) for state, n in conn.execute(query)}

    def update_job(self, /, job_id: str, **fields: Any) -> JobRecord:
        """Change fields other than the state (use :meth:`transition` for that)."""
        if "state" in fields:
            raise ValueError("use transition() to change a job's state")
        with self._tx("update job") as conn:
            job = self._job(conn, job_id, lock=True)
            new = replace(job, updated_at=self._clock(), **fields)
            conn.execute(update(t.jobs).where(t.jobs.c.job_id == job_id).values(**new.to_row()))
            return new

    def transition(
        self,
        /,
        job_id: str,
        wanted: JobState,
        detail: dict[str, Any] | None = None,
        *,
        expect: frozenset[JobState] | None = None,
        **fields: Any,
    ) -> JobRecord:
        """Move a job to ``wanted`` (with ``fields``) and record the event, atomically.

        ``expect`` pins the states the caller believes the job is in: a job that moved on
        meanwhile raises :class:`InvalidTransition` instead of being overwritten.
        """
        with self._tx("transition job") as conn:
            job = self._job(conn, job_id, lock=True)
            if (expect is not None and job.state not in expect) or not allowed(job.state, wanted):
                raise InvalidTransition(job_id, job.state, wanted)
            now = self._clock()
            new = replace(job, state=wanted, updated_at=now, **fields)
            conn.execute(update(t.jobs).where(t.jobs.c.job_id == job_id).values(**new.to_row()))
            self._event(conn, job_id, wanted, now, detail or {})
            return new

    def _job(self, conn: Connection, job_id: str, *, lock: bool = False) -> JobRecord:
        query = select(t.jobs).where(t.jobs.c.job_id == job_id)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise UnknownJob(job_id)
        return JobRecord.from_row(row)

    def _event(
        self, conn: Connection, job_id: str, state: JobState, at: float, detail: dict[str, Any]
    ) -> None:
        conn.execute(
            insert(t.job_events).values(
                job_id=job_id, state=str(state), at=at, detail=json.dumps(detail, default=str)
            )
        )

    def events(self, job_id: str, after: int = 0) -> list[EventRecord]:
        query = (
            select(t.job_events)
            .where(t.job_events.c.job_id == job_id, t.job_events.c.id > after)
            .order_by(t.job_events.c.id)
        )
        with self._tx("read events") as conn:
            return [
                EventRecord(r.id, r.job_id, JobState(r.state), r.at, json.loads(r.detail))
                for r in conn.execute(query)
            ]

    # ------------------------------------------------------------- providers
    def put_slots(self, slots: list[ProviderSlot]) -> None:
        """Insert or overwrite assignment slots (keyed by job and index)."""
        with self._tx("write assignment") as conn:
            # The first seat chosen for a job marks its ``matched`` phase.
            for job_id in {s.job_id for s in slots}:
                conn.execute(
                    update(t.jobs)
                    .where(t.jobs.c.job_id == job_id, t.jobs.c.matched_at.is_(None))
                    .values(matched_at=self._clock())
                )
            for slot in slots:
                key = (t.job_providers.c.job_id == slot.job_id) & (
                    t.job_providers.c.idx == slot.idx
                )
                if conn.execute(select(t.job_providers.c.idx).where(key)).first() is None:
                    conn.execute(insert(t.job_providers).values(**slot.to_row()))
                else:
                    conn.execute(update(t.job_providers).where(key).values(**slot.to_row()))

    def update_slot(
        self,
        /,
        job_id: str,
        idx: int,
        *,
        only_if: frozenset[SeatState] | None = None,
        **fields: Any,
    ) -> ProviderSlot:
        """Change one slot; with ``only_if``, only while it is in one of those states
        (otherwise it is returned unchanged), so a late answer never overwrites news.
        A state change the seat lifecycle forbids raises :class:`InvalidTransition`."""
        with self._tx("update assignment") as conn:
            key = (t.job_providers.c.job_id == job_id) & (t.job_providers.c.idx == idx)
            row = conn.execute(select(t.job_providers).where(key).with_for_update()).first()
            if row is None:
                raise UnknownJob(f"{job_id} slot {idx}")
            current = ProviderSlot.from_row(row)
            if only_if is not None and current.state not in only_if:
                return current
            wanted = fields.get("state", current.state)
            if not seat_allowed(current.state, wanted):
                raise InvalidTransition(f"{job_id} seat {idx}", current.state, wanted)
            new = replace(current, updated_at=self._clock(), **fields)
            conn.execute(update(t.job_providers).where(key).values(**new.to_row()))
            return new

    def decline_slot(self, job_id: str, idx: int, address: str, reason: str) -> bool:
        """Give a seat not yet on chain back (its provider declined it) and record why.

        Returns False, changing nothing, when the seat is on chain or held by another
        provider by now."""
        with self._tx("record decline") as conn:
            key = (t.job_providers.c.job_id == job_id) & (t.job_providers.c.idx == idx)
            row = conn.execute(select(t.job_providers).where(key).with_for_update()).first()
            if row is None:
                return False
            current = ProviderSlot.from_row(row)
            if not seat_allowed(current.state, SeatState.DECLINED) or current.address != address:
                return False
            conn.execute(t.job_providers.delete().where(key))
            conn.execute(
                insert(t.job_declines).values(
                    job_id=job_id, seat=idx, address=address, reason=reason, at=self._clock()
                )
            )
            return True

    def declines(self, job_id: str) -> list[DeclineRecord]:
        query = (
            select(t.job_declines)
            .where(t.job_declines.c.job_id == job_id)
            .order_by(t.job_declines.c.id)
        )
        with self._tx("read declines") as conn:
            return [
                DeclineRecord(r.job_id, r.seat, r.address, r.reason, r.at)
                for r in conn.execute(query)
            ]

    def slots(self, job_id: str) -> list[ProviderSlot]:
        query = (
            select(t.job_providers)
            .where(t.job_providers.c.job_id == job_id)
            .order_by(t.job_providers.c.idx)
        )
        with self._tx("read assignment") as conn:
            return [ProviderSlot.from_row(r) for r in conn.execute(query)]

    # ------------------------------------------------------------------ logs
    def add_log(self, job_id: str, provider: str, text: str) -> bool:
        """Append a log line; False (and nothing stored) once the job's cap is reached."""
        with self._tx("append log") as conn:
            count = conn.execute(
                select(func.count()).select_from(t.job_logs).where(t.job_logs.c.job_id == job_id)
            ).scalar_one()
            if count >= MAX_LOG_LINES_PER_JOB:
                return False
            conn.execute(
                insert(t.job_logs).values(
                    job_id=job_id, provider=provider, at=self._clock(), text=text
                )
            )
            return True

    def logs(self, job_id: str, limit: int = MAX_LOG_LINES_PER_JOB) -> list[LogLine]:
        query = (
            select(t.job_logs)
            .where(t.job_logs.c.job_id == job_id)
            .order_by(t.job_logs.c.id)
            .limit(limit)
        )
        with self._tx("read logs") as conn:
            return [LogLine(r.provider, r.at, r.text) for r in conn.execute(query)]

    # ----------------------------------------------------------- explanations
    def save_explanation(self, job_id: str, body: list[dict[str, Any]]) -> None:
        text = json.dumps(body)
        with self._tx("save explanation") as conn:
            key = t.explanations.c.job_id == job_id
            if conn.execute(select(t.explanations.c.job_id).where(key)).first() is None:
                conn.execute(insert(t.explanations).values(job_id=job_id, body=text))
            else:
                conn.execute(update(t.explanations).where(key).values(body=text))

    def explanation(self, job_id: str) -> list[dict[str, Any]] | None:
        with self._tx("read explanation") as conn:
            row = conn.execute(
                select(t.explanations).where(t.explanations.c.job_id == job_id)
            ).first()
            return None if row is None else list(json.loads(row.body))

    # ---------------------------------------------------------------- cursors
    def cursor(self, name: str) -> int | None:
        with self._tx("read cursor") as conn:
            row = conn.execute(select(t.cursors.c.block).where(t.cursors.c.name == name)).first()
            return None if row is None else int(row.block)

    def set_cursor(self, name: str, block: int) -> None:
        with self._tx("write cursor") as conn:
            key = t.cursors.c.name == name
            if conn.execute(select(t.cursors.c.name).where(key)).first() is None:
                conn.execute(insert(t.cursors).values(name=name, block=block))
            else:
                conn.execute(update(t.cursors).where(key).values(block=block))

    # ------------------------------------------------------------- reputation
    def reputations(self) -> dict[str, tuple[float, float, float]]:
        with self._tx("read reputations") as conn:
            return {
                r.address: (r.alpha, r.beta, r.updated_at)
                for r in conn.execute(select(t.reputations))
            }

    def reputation_records(self) -> list[ReputationRecord]:
        with self._tx("read reputations") as conn:
            return [ReputationRecord.from_row(r) for r in conn.execute(select(t.reputations))]

    def reputation(self, address: str) -> ReputationRecord | None:
        with self._tx("read reputation") as conn:
            return self._reputation(conn, address)

    def _reputation(self, conn: Connection, address: str) -> ReputationRecord | None:
        query = select(t.reputations).where(t.reputations.c.address == address)
        row = conn.execute(query.with_for_update()).first()
        return None if row is None else ReputationRecord.from_row(row)

    def _put_reputation(
        self, conn: Connection, record: ReputationRecord, existing: ReputationRecord | None
    ) -> None:
        if existing is None:
            conn.execute(insert(t.reputations).values(**record.to_row()))
        else:
            key = t.reputations.c.address == record.address
            conn.execute(update(t.reputations).where(key).values(**record.to_row()))

    def save_reputation(self, address: str, alpha: float, beta: float, updated_at: float) -> None:
        with self._tx("save reputation") as conn:
            old = self._reputation(conn, address)
            base = old or ReputationRecord(address, alpha, beta, updated_at)
            new = replace(base, alpha=alpha, beta=beta, updated_at=updated_at)
            self._put_reputation(conn, new, old)

    def seed_reputation(self, record: ReputationRecord) -> ReputationRecord:
        """Store ``record`` unless the provider has a reputation already; returns the stored one."""
        with self._tx("seed reputation") as conn:
            old = self._reputation(conn, record.address)
            if old is not None:
                return old
            self._put_reputation(conn, record, None)
            return record

    def record_outcome(
        self, job_id: str, idx: int, address: str, change: ReputationUpdate | None
    ) -> ReputationRecord | None:
        """Count one seat's outcome into its provider's reputation, at most once ever.

        In one transaction: unless the seat is marked recorded already, mark it and (with
        ``change``, which maps the stored reputation or None to the new one) store the new
        reputation. Returns it, or None when nothing was stored (already recorded, or no
        ``change``: an outcome judged neutral)."""
        with self._tx("record outcome") as conn:
            key = (t.job_providers.c.job_id == job_id) & (t.job_providers.c.idx == idx)
            row = conn.execute(
                select(t.job_providers.c.reputation_recorded).where(key).with_for_update()
            ).first()
            if row is None or row.reputation_recorded:
                return None
            conn.execute(update(t.job_providers).where(key).values(reputation_recorded=True))
            if change is None:
                return None
            old = self._reputation(conn, address)
            new = change(old)
            self._put_reputation(conn, new, old)
            return new

    def unrecorded_jobs(self) -> list[str]:
        """Jobs the chain ended (or that were aborted) with seats not counted yet (a crash or
        a restart came between)."""
        ended = t.jobs.c.state.in_([str(s) for s in FINAL]) | (
            (t.jobs.c.state == str(JobState.FAILED)) & t.jobs.c.abort_tx.is_not(None)
        )
        query = (
            select(t.jobs.c.job_id)
            .distinct()
            .join(t.job_providers, t.job_providers.c.job_id == t.jobs.c.job_id)
            .where(
                ended,
                t.job_providers.c.reputation_recorded == false(),
                t.job_providers.c.state.not_in([str(s) for s in OFF_CHAIN]),
            )
            .limit(MAX_LIST)
        )
        with self._tx("list unrecorded jobs") as conn:
            return [str(r.job_id) for r in conn.execute(query)]

    # ---------------------------------------------------------------- history
    def add_history(self, rows: list[h.HistoryRow]) -> None:
        """Add sampled figures (offered seconds, prices) to their periods."""
        with self._tx("add history") as conn:
            h.add_rows(conn, rows)

    def record_history(self, job_id: str, rows: list[h.HistoryRow]) -> bool:
        """Add an ended job's figures to the history, at most once ever: in one transaction,
        unless the job is marked recorded, mark it and add ``rows``. False when it was."""
        with self._tx("record history") as conn:
            key = t.jobs.c.job_id == job_id
            row = conn.execute(
                select(t.jobs.c.history_recorded).where(key).with_for_update()
            ).first()
            if row is None or row.history_recorded:
                return False
            conn.execute(update(t.jobs).where(key).values(history_recorded=True))
            h.add_rows(conn, rows)
            return True

    def history(
        self, /, kind: type[R], since: float, until: float | None = None, **key: Any
    ) -> list[R]:
        """Stored periods of one kind from ``since`` (bucket start), oldest first."""
        with self._tx("read history") as conn:
            return h.read_rows(conn, kind, since, until, **key)

    def compact_history(self, keep_hours_s: float, retention_s: float) -> int:
        """Fold week-old hours into days and drop what is past retention (see
        :func:`coordinator.store.history.compact`)."""
        with self._tx("compact history") as conn:
            return h.compact(conn, self._clock(), keep_hours_s, retention_s)

    def unrecorded_history(self) -> list[str]:
        """Ended jobs whose figures are not in the history yet (a restart came between)."""
        ended = t.jobs.c.state.in_([str(s) for s in FINAL]) | (
            (t.jobs.c.state == str(JobState.FAILED)) & t.jobs.c.abort_tx.is_not(None)
        )
        query = (
            select(t.jobs.c.job_id)
            .where(ended, t.jobs.c.history_recorded == false())
            .limit(MAX_LIST)
        )
        with self._tx("list unrecorded history") as conn:
            return [str(r.job_id) for r in conn.execute(query)]


class _InThread(Generic[P, T]):
    """A :class:`Store` method as an :class:`AsyncStore` method: same parameters, awaited,
    run in a worker thread. The call goes through the instance's attribute, so a store
    whose method was replaced (a test's fault injection) is called as it is."""

    def __init__(self, method: Callable[Concatenate[Store, P], T]) -> None:
        self._name = method.__name__

    def __get__(
        self, store: AsyncStore | None, owner: type[AsyncStore]
    ) -> Callable[P, Awaitable[T]]:
        if store is None:
            raise AttributeError(f"{self._name} is an instance method of AsyncStore")
        method: Callable[P, T] = getattr(store.sync, self._name)
        run = store.run

        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            return await run(method, *args, **kwargs)

        return call


class AsyncStore:
    """The same store for trio code: each call runs in a worker thread.

    Calls are limited to a few at a time (one for SQLite, whose writes serialize anyway).
    """

    def __init__(self, store: Store, max_threads: int = 4) -> None:
        self.sync = store
        limit = 1 if store.url.startswith("sqlite") else max_threads
        self._limiter = trio.CapacityLimiter(limit)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(fn, *args, **kwargs)
        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    # Each Store method, awaitable here with the same signature and return type.
    close = _InThread(Store.close)
    add_job = _InThread(Store.add_job)
    get_job = _InThread(Store.get_job)
    find_job = _InThread(Store.find_job)
    list_jobs = _InThread(Store.list_jobs)
    open_jobs = _InThread(Store.open_jobs)
    count_by_state = _InThread(Store.count_by_state)
    update_job = _InThread(Store.update_job)
    transition = _InThread(Store.transition)
    events = _InThread(Store.events)
    put_slots = _InThread(Store.put_slots)
    update_slot = _InThread(Store.update_slot)
    decline_slot = _InThread(Store.decline_slot)
    declines = _InThread(Store.declines)
    slots = _InThread(Store.slots)
    add_log = _InThread(Store.add_log)
    logs = _InThread(Store.logs)
    save_explanation = _InThread(Store.save_explanation)
    explanation = _InThread(Store.explanation)
    cursor = _InThread(Store.cursor)
    set_cursor = _InThread(Store.set_cursor)
    reputations = _InThread(Store.reputations)
    reputation_records = _InThread(Store.reputation_records)
    reputation = _InThread(Store.reputation)
    save_reputation = _InThread(Store.save_reputation)
    seed_reputation = _InThread(Store.seed_reputation)
    record_outcome = _InThread(Store.record_outcome)
    unrecorded_jobs = _InThread(Store.unrecorded_jobs)
    add_history = _InThread(Store.add_history)
    record_history = _InThread(Store.record_history)
    history = _InThread(Store.history)
    compact_history = _InThread(Store.compact_history)
    unrecorded_history = _InThread(Store.unrecorded_history)
