"""Committing and revealing on chain when the coordinator does not play its part.

The market lets a provider act without its coordinator (``contracts/README.md``,
"Commitments, receipts and votes"); :class:`ChainFallback` is the daemon's background task
that does so, for every job it holds a commitment for:

* **Commit on chain** when no valid ``CommitReceipt`` came by the seat's commit deadline
  minus :func:`receipt_margin` (``min(30 s, commitWindow / 3)``): without a receipt or an
  on-chain commit the provider's reveal could not count as a vote.
* **Reveal on chain** once on-chain reveals open (after every seat's commit deadline) and
  the job is still unsettled: at once when the coordinator never asked for the reveal, and
  after half the reveal window when it asked but did not settle. The reveal opens the
  receipt's commit hash or the on-chain commit, and must land before ``revealClose``.

Every step is logged with its reason. A chain error is logged and retried on the next
round, at most ``max_attempts`` times per step; nothing here ends the daemon. A job leaves
the watch list once it is settled (or otherwise closed) on chain, its reveal window has
passed, or a step was given up; the record says so (``chain_done``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import trio

from contracts.models import JobStatus, JobTerms, OnChainEntry, Receipt, Seat
from protocol.errors import GpuMarketError
from protocol.ids import Address, JobId
from protocol.ipfs.cid import result_digest
from provider_node.jobstore import JobStore, LocalJob, LocalPhase

log = logging.getLogger(__name__)

MAX_RECEIPT_MARGIN_S = 30
DEFAULT_INTERVAL_S = 3.0
DEFAULT_MAX_ATTEMPTS = 5
REVEAL_GRACE = 0.5
"""Fraction of the reveal window a coordinator that asked for the reveal has to settle."""


def receipt_margin(commit_window: int) -> int:
    """Seconds before the commit deadline at which a missing receipt means committing on
    chain: ``min(30, commitWindow / 3)``."""
    return min(MAX_RECEIPT_MARGIN_S, commit_window // 3)


class FallbackChain(Protocol):
    """The chain calls the fallback makes, acting for the provider."""

    @property
    def address(self) -> Address: ...

    def now(self) -> int: ...
    def job_status(self, job_id: JobId) -> tuple[JobStatus, int]: ...
    def job_terms(self, job_id: JobId) -> JobTerms: ...
    def get_seats(self, job_id: JobId) -> list[Seat]: ...
    def on_chain_entry(self, job_id: JobId, seat: int) -> OnChainEntry: ...
    def commit_on_chain(self, job_id: JobId, seat: int, commit_hash: bytes) -> Receipt: ...
    def reveal_on_chain(
        self,
        job_id: JobId,
        seat: int,
        result: bytes,
        runtime_ms: int,
        salt: bytes,
        *,
        provider_signature: bytes = b"",
        receipt_signature: bytes = b"",
    ) -> Receipt: ...


LIVE = (JobStatus.OPEN, JobStatus.ASSIGNED)
T = TypeVar("T")


class ChainFallback:
    """Watches held jobs and commits or reveals on chain for them; see the module doc."""

    def __init__(
        self,
        chain: FallbackChain,
        jobs: JobStore,
        *,
        now: Callable[[], int] | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.chain = chain
        self.jobs = jobs
        self.now = now or (lambda: chain.now())
        """Block time as the next transaction will see it (the daemon passes a clock that
        does not lag on a chain that mines only on demand)."""
        self.interval_s = interval_s
        self.max_attempts = max_attempts
        self.committed = 0
        self.revealed = 0
        self._watched: set[JobId] = set()
        self._terms: dict[JobId, JobTerms] = {}
        self._failures: dict[tuple[JobId, str], int] = {}

    @property
    def watched(self) -> frozenset[JobId]:
        return frozenset(self._watched)

    def watch(self, job_id: JobId) -> None:
        """Look after ``job_id`` from now on (a job this provider holds a seat of)."""
        self._watched.add(job_id)

    def watch_records(self) -> None:
        """Watch every stored job that may still need the chain (after a restart)."""
        for record in self.jobs.all():
            if not record.chain_done and not _uncommitted_end(record):
                self.watch(record.job_id)

    async def run(self) -> None:
        """Check every watched job each ``interval_s``, until cancelled."""
        while True:
            await self.tick()
            await trio.sleep(self.interval_s)

    async def tick(self) -> None:
        """One round over the watched jobs; never raises for one job's trouble."""
        for job_id in sorted(self._watched):
            try:
                await self._check(job_id)
            except Exception:  # a bug for one job must not stop the others, nor the daemon
                log.exception("job 0x%s: chain fallback check failed", job_id.hex())
                self._failed(job_id, "check")

    # ------------------------------------------------------------------ one job
    async def _check(self, job_id: JobId) -> None:
        record = self.jobs.load(job_id)
        if record is None or record.chain_done or _uncommitted_end(record):
            self._forget(job_id)
            return
        if record.commit_hash is None:
            return  # still running: nothing to commit yet
        status, _ = await self._call(self.chain.job_status, job_id)
        if status not in LIVE:
            self._done(record, f"the job is {status.name.lower()} on chain")
            return
        terms = self._terms.get(job_id)
        if terms is None:
            terms = self._terms[job_id] = await self._call(self.chain.job_terms, job_id)
        seats = await self._call(self.chain.get_seats, job_id)
        if record.seat >= len(seats) or seats[record.seat].provider != self.chain.address:
            self._done(record, f"seat {record.seat} is not this provider's on chain")
            return
        now = await self._call(self.now)
        if record.receipt_signature is None and not record.committed_on_chain:
            deadline = terms.commit_deadline(seats[record.seat])
            if now < deadline:
                await self._maybe_commit(record, terms, deadline, now)
            elif now > terms.reveal_open(seats):  # a late receipt could still have come
                self._done(record, "no CommitReceipt and no on-chain commit: nothing can vote")
            return
        await self._maybe_reveal(record, terms, seats, now)

    async def _maybe_commit(
        self, record: LocalJob, terms: JobTerms, deadline: int, now: int
    ) -> None:
        if now < deadline - receipt_margin(terms.commit_window):
            return
        commit_hash = record.commit_hash
        assert commit_hash is not None
        entry = await self._call(self.chain.on_chain_entry, record.job_id, record.seat)
        if entry.committed:  # an earlier try went through unseen (a lost receipt, a restart)
            if entry.commit_hash == commit_hash:
                self.jobs.update(record.job_id, committed_on_chain=True)
            else:
                self._done(record, "the chain holds another commitment for this seat")
            return
        log.warning(
            "job 0x%s: no CommitReceipt from the coordinator %d s before the commit deadline; "
            "committing on chain",
            record.job_id.hex(),
            deadline - now,
        )
        commit = self.chain.commit_on_chain
        if await self._send(
            "commit", record, lambda: commit(record.job_id, record.seat, commit_hash)
        ):
            self.jobs.update(record.job_id, committed_on_chain=True)
            self.committed += 1

    async def _maybe_reveal(
        self, record: LocalJob, terms: JobTerms, seats: list[Seat], now: int
    ) -> None:
        opens, closes = terms.reveal_open(seats), terms.reveal_close(seats)
        if now <= opens:
            return
        if now >= closes:  # the next block would be past it
            self._done(record, "the reveal window closed unsettled")
            return
        asked = record.phase is LocalPhase.REVEALED
        if asked and now < opens + terms.reveal_window * REVEAL_GRACE:
            return  # the coordinator has our reveal; give it time to settle
        entry = await self._call(self.chain.on_chain_entry, record.job_id, record.seat)
        if entry.revealed:
            self._done(record, "the reveal is on chain already")
            return
        why = "it was asked for but not settled" if asked else "the coordinator never asked"
        log.warning("job 0x%s: revealing on chain: %s", record.job_id.hex(), why)
        cid, runtime_ms, salt = record.result_cid, record.runtime_ms, record.salt
        assert cid is not None and runtime_ms is not None and salt is not None
        sent = await self._send(
            "reveal",
            record,
            lambda: self.chain.reveal_on_chain(
                record.job_id,
                record.seat,
                result_digest(cid),
                runtime_ms,
                salt,
                receipt_signature=record.receipt_signature or b"",
            ),
        )
        if sent:
            self.revealed += 1
            self.jobs.update(record.job_id, revealed_on_chain=True)
            self._done(record, "revealed on chain")

    # ------------------------------------------------------------------ helpers
    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args)

    async def _send(self, step: str, record: LocalJob, send: Callable[[], Receipt]) -> bool:
        """One transaction; False (logged, counted) when it failed."""
        try:
            receipt = await self._call(send)
        except GpuMarketError as exc:
            log.warning("job 0x%s: %s on chain failed: %s", record.job_id.hex(), step, exc)
            self._failed(record.job_id, step)
            return False
        log.info("job 0x%s: %s on chain in %s", record.job_id.hex(), step, receipt.tx_hash)
        return True

    def _failed(self, job_id: JobId, step: str) -> None:
        key = (job_id, step)
        self._failures[key] = count = self._failures.get(key, 0) + 1
        if count >= self.max_attempts:
            log.error(
                "job 0x%s: giving up the on-chain %s after %d failed tries",
                job_id.hex(),
                step,
                count,
            )
            record = self.jobs.load(job_id)
            if record is not None:
                self._done(record, f"{step} failed {count} times")
            else:
                self._forget(job_id)

    def _done(self, record: LocalJob, reason: str) -> None:
        log.info("job 0x%s: nothing more to do on chain: %s", record.job_id.hex(), reason)
        self.jobs.update(record.job_id, chain_done=True)
        self._forget(record.job_id)

    def _forget(self, job_id: JobId) -> None:
        self._watched.discard(job_id)
        self._terms.pop(job_id, None)
        for key in [k for k in self._failures if k[0] == job_id]:
            del self._failures[key]


def _uncommitted_end(record: LocalJob) -> bool:
    """A job that ended here without a commitment: the chain holds nothing of ours."""
    return record.commit_hash is None and record.phase.terminal


def wall_chain_time(chain: FallbackChain) -> Callable[[], int]:
    """Block time that does not lag: the later of the latest block's time and this host's
    clock (a devnet that mines on demand keeps an old timestamp until the next block)."""
    return lambda: max(chain.now(), int(time.time()))
