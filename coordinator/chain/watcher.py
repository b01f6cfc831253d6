"""The chain watcher: a persisted block cursor over the market's events.

It reads events up to ``head - reorg_margin`` only, so nothing it records can be undone by
a reorganisation shallower than the margin, and it stores the cursor after each range, so
a restart resumes where it stopped. It remembers the hash of the last block of each range it
read; when one of them is no longer on the chain (a reorganisation deeper than the margin),
it moves the cursor back to the newest block still there and reads the replaced blocks
again: a job whose creation moved (the requester's wallet sent it again, or another
transaction took its id) has its terms read again while nothing has happened to it yet. It
picks up ``JobCreated`` for this coordinator on its
own (``POST /jobs`` merely hurries it) and records what only the chain decides: settled
(with what each seat was paid and billed, and what was slashed), reclaimed, cancelled,
aborted; what seats put on chain themselves (``ProviderCommitted``, ``ProviderRevealed``,
which the verdict counts); and ``SettlementSkipped``, which wakes the job's driver to
decide again. It also keeps the chain's notion of "now" for deadline checks.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from contracts.abi import CreatedJob
from contracts.models import ChainEvent
from coordinator.chain.billing import record_settlement, record_slash
from coordinator.chain.chain_io import AsyncChain
from coordinator.chain.settlement import reason_name
from coordinator.errors import InvalidTransition
from coordinator.lifecycle.driver import new_seed
from coordinator.signals import Signals
from coordinator.store import AsyncStore, JobRecord, ProviderSlot
from coordinator.tasks import contained
from protocol.eip712 import commit_hash, digest_to_cid
from protocol.ids import Cid, JobId, job_id_hex, parse_address, parse_job_id
from protocol.lifecycle import JobState, SeatState

log = logging.getLogger(__name__)

CURSOR = "chain"
MAX_RANGE = 2000
REMEMBERED_BLOCKS = 256
"""Range ends whose hashes are kept to notice a reorganisation (and how far back to go)."""
TERMS_FIELDS = (
    "requester",
    "coordinator",
    "spec_cid",
    "redundancy",
    "mode",
    "price_cap",
    "fee",
    "timeout_ms",
    "assign_deadline",
    "commit_window",
    "reveal_window",
    "spare_deadline",
    "settle_deadline",
    "created_block",
)
"""What a job's ``JobCreated`` event fixes."""
CHAIN_DECISIONS = {
    "JobSettled": JobState.SETTLED,
    "JobReclaimed": JobState.RECLAIMED,
    "JobCancelled": JobState.CANCELLED,
}
COMMITTABLE = frozenset(
    {
        SeatState.ASSIGNED,
        SeatState.RUNNING,
        SeatState.FAILED,
        SeatState.REPLACED,
    }
)


def job_from_event(event: ChainEvent, clock: Callable[[], float] = time.time) -> JobRecord:
    created = CreatedJob.from_event(event)
    terms = created.terms
    now = clock()
    return JobRecord(
        job_id=job_id_hex(created.job_id),
        state=JobState.CREATED,
        requester=terms.requester,
        coordinator=terms.coordinator,
        spec_cid=Cid(created.spec_cid[:128]),  # as stated on chain; fetched and checked later
        redundancy=terms.redundancy,
        mode=terms.mode,
        price_cap=terms.price_cap,
        fee=terms.fee,
        timeout_ms=terms.timeout_ms,
        assign_deadline=terms.assign_deadline,
        commit_window=terms.commit_window,
        reveal_window=terms.reveal_window,
        spare_deadline=terms.spare_deadline,
        settle_deadline=terms.settle_deadline,
        created_block=created.block,
        seed=new_seed(),
        created_at=now,
        updated_at=now,
    )


class ChainWatcher:
    def __init__(
        self,
        chain: AsyncChain,
        store: AsyncStore,
        signals: Signals,
        on_job: Callable[[str], None],
        *,
        reorg_margin: int = 0,
        poll_s: float = 0.5,
        start_block: int = 0,
    ) -> None:
        self.chain = chain
        self.store = store
        self.signals = signals
        self.on_job = on_job
        self.reorg_margin = reorg_margin
        self.poll_s = poll_s
        self.start_block = start_block
        self.head = 0
        self.block_time = 0.0
        self.clock_offset: float | None = None
        """Chain time minus wall time, measured on the freshest block seen."""
        self._poke = trio.Event()
        self._finalizing: set[tuple[str, JobId | None]] = set()
        self._read_up_to: deque[tuple[int, bytes]] = deque(maxlen=REMEMBERED_BLOCKS)
        """(number, hash) of the last block of each range read, oldest first."""
        self.reorgs = 0
        """Reorganisations seen below the margin (each moved the cursor back)."""
        self.observers: list[Callable[[ChainEvent], None]] = []
        """Called with every event read (of any contract), before it is applied."""

    def now(self) -> float:
        """The chain's time as the next block will see it.

        A chain's clock need not follow this host's (a devnet moved in time, a node whose
        blocks lag): the offset is measured on blocks seen right after they were mined, and
        the chain's time runs on with the wall clock from there. Deadlines are compared
        against this, never against the wall clock itself.
        """
        if self.clock_offset is None:
            return max(self.block_time, time.time())
        return max(self.block_time, time.time() + self.clock_offset)

    def observe_block(self, head: int, timestamp: float, wall: float) -> None:
        """Track the chain's clock: a new head since the last poll was mined within one
        poll interval, so its timestamp says what time it is on chain."""
        if self.clock_offset is None or head != self.head:
            self.clock_offset = timestamp - wall
        self.head = head
        self.block_time = timestamp

    def poke(self) -> None:
        self._poke.set()

    async def poll_once(self) -> int:
        """Read every new event up to the safe head; returns how many were applied."""
        head = await self.chain.block_number()
        self.observe_block(head, float(await self.chain.now()), time.time())
        safe = self.head - self.reorg_margin
        cursor = await self._rewind_past_reorgs(await self.store.cursor(CURSOR))
        start = self.start_block if cursor is None else cursor + 1
        applied = 0
        while start <= safe:
            end = min(safe, start + MAX_RANGE - 1)
            events = await self.chain.get_events(start, end)
            # finalize emits JobSettled then JobFinalized in one transaction.
            self._finalizing = {(e.tx_hash, e.job_id) for e in events if e.name == "JobFinalized"}
            for event in events:
                for observe in self.observers:
                    observe(event)
                applied += await self.apply(event)
            await self.store.set_cursor(CURSOR, end)
            end_hash = await self.chain.block_hash(end)
            if end_hash is not None:
                self._read_up_to.append((end, end_hash))
            start = end + 1
        return applied

    async def _rewind_past_reorgs(self, cursor: int | None) -> int | None:
        """The cursor to read on from: moved back to the newest remembered block still on
        the chain when a later one was replaced (events from there on are read again)."""
        replaced = 0
        while self._read_up_to:
            number, known = self._read_up_to[-1]
            if await self.chain.block_hash(number) == known:
                break
            self._read_up_to.pop()
            replaced += 1
        if not replaced or cursor is None:
            return cursor
        back = self._read_up_to[-1][0] if self._read_up_to else self.start_block - 1
        back = min(back, cursor)
        self.reorgs += 1
        log.warning(
            "the chain reorganised below the reorg margin (%d): reading again from block %d",
            self.reorg_margin,
            back + 1,
        )
        await self.store.set_cursor(CURSOR, back)
        return back

    async def apply(self, event: ChainEvent) -> int:
        if event.contract != "market":
            return 0
        if event.name == "JobCreated":
            if parse_address(event.args["coordinator"]) != self.chain.address:
                return 0
            created = job_from_event(event)
            job, new = await self.store.add_job(created, {"block": event.block_number})
            if new:
                log.info("job %s created on chain (block %d)", job.job_id, event.block_number)
            elif job.state is JobState.CREATED and any(
                getattr(job, f) != getattr(created, f) for f in TERMS_FIELDS
            ):
                # A reorganisation moved (or replaced) its creation: take the terms as
                # they are on the chain now.
                terms = {f: getattr(created, f) for f in TERMS_FIELDS}
                job = await self.store.update_job(job.job_id, **terms)
                await self.chain.forget_job(JobId(bytes(event.args["jobId"])))
                log.warning(
                    "job %s: its creation moved to block %d; terms read again",
                    job.job_id,
                    event.block_number,
                )
            self.on_job(job.job_id)
            return 1
        if event.job_id is None:
            return 0
        job_id = job_id_hex(event.job_id)
        seen = await self.store.find_job(job_id)
        if seen is None:
            return 0
        handler = {
            "ProviderCommitted": self._committed,
            "ProviderRevealed": self._revealed,
            "JobSettled": self._settled,
            "ProviderSlashed": self._slashed,
            "JobAborted": self._aborted,
            "SettlementSkipped": self._skipped,
        }.get(event.name)
        if handler is not None:
            await handler(seen, event)
        wanted = CHAIN_DECISIONS.get(event.name)
        if wanted is JobState.SETTLED and (event.tx_hash, event.job_id) in self._finalizing:
            wanted = JobState.FINALIZED
        if wanted is not None and not seen.state.final:
            try:
                await self.store.transition(
                    job_id, wanted, {"tx": event.tx_hash, "block": event.block_number}
                )
            except InvalidTransition:
                return 0
            self.on_job(job_id)  # its driver counts the seats' outcomes (reputation)
        self.signals.fire(job_id)
        return 1

    async def _seat(self, job: JobRecord, event: ChainEvent) -> ProviderSlot | None:
        """The stored seat an event names (None while the store has not adopted it yet)."""
        idx = int(event.args["seat"])
        for slot in await self.store.slots(job.job_id):
            if slot.idx == idx and parse_address(slot.address) == parse_address(
                event.args["provider"]
            ):
                return slot
        return None

    async def _committed(self, job: JobRecord, event: ChainEvent) -> None:
        slot = await self._seat(job, event)
        if slot is None:
            return
        fields: dict[str, Any] = {"onchain_commit": "0x" + bytes(event.args["commitHash"]).hex()}
        if slot.state in COMMITTABLE:
            fields["state"] = SeatState.COMMITTED
        await self.store.update_slot(job.job_id, slot.idx, **fields)

    async def _revealed(self, job: JobRecord, event: ChainEvent) -> None:
        slot = await self._seat(job, event)
        if slot is None:
            return
        a = event.args
        result, runtime, salt = bytes(a["result"]), int(a["runtimeMs"]), bytes(a["salt"])
        opened = commit_hash(JobId(bytes(a["jobId"])), a["provider"], result, runtime, salt)
        fields: dict[str, Any] = {
            "onchain_reveal_hash": "0x" + opened.hex(),
            "onchain_result": "0x" + result.hex(),
            "onchain_runtime_ms": runtime,
            "onchain_votes": bool(a["votes"]),
        }
        if a["votes"] and slot.state.on_chain and slot.state is not SeatState.REVEALED:
            fields.update(
                state=SeatState.REVEALED,
                result_cid=digest_to_cid(result),
                runtime_ms=runtime,
                salt="0x" + salt.hex(),
            )
        await self.store.update_slot(job.job_id, slot.idx, **fields)

    async def _settled(self, job: JobRecord, event: ChainEvent) -> None:
        await record_settlement(self.store, job.job_id, event.args)
        fields: dict[str, Any] = {"settle_tx": job.settle_tx or event.tx_hash}
        result = bytes(event.args.get("result", b""))
        if job.result_cid is None and any(result):
            fields["result_cid"] = digest_to_cid(result)
        await self.store.update_job(job.job_id, **fields)

    async def _slashed(self, job: JobRecord, event: ChainEvent) -> None:
        await record_slash(
            self.store, job.job_id, event.args["provider"], int(event.args["amount"])
        )

    async def _aborted(self, job: JobRecord, event: ChainEvent) -> None:
        if job.abort_tx is not None or job.state.final:
            return
        refund = int(event.args["refund"])
        detail = {"aborted": event.tx_hash, "refund": str(refund), "block": event.block_number}
        fields: dict[str, Any] = {"abort_tx": event.tx_hash, "refund": refund}
        if job.state is not JobState.FAILED:
            fields.update(failure_reason="aborted by the coordinator")
        await self.store.transition(job.job_id, JobState.FAILED, detail, **fields)
        self.on_job(job.job_id)  # its driver counts the seats' outcomes (reputation)

    async def _skipped(self, job: JobRecord, event: ChainEvent) -> None:
        why = reason_name(bytes(event.args["reason"]))
        log.warning("job %s: the market skipped its settlement: %s", job.job_id[:18], why)
        self.on_job(job.job_id)

    async def run(self) -> None:
        while True:
            with contained(log, "chain watcher"):
                await self.poll_once()
            with trio.move_on_after(self.poll_s):
                await self._poke.wait()
            self._poke = trio.Event()

    async def find_created(self, job_id: str, lookback: int = 10_000) -> JobRecord | None:
        """Fast path for ``POST /jobs``: find and record a JobCreated without waiting."""
        head = await self.chain.block_number()
        events = await self.chain.get_events(max(0, head - lookback), head)
        for event in events:
            if event.name == "JobCreated" and event.job_id == parse_job_id(job_id):
                await self.apply(event)
                return await self.store.find_job(job_id)
        return None
