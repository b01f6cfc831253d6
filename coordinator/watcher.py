"""The chain watcher: a persisted block cursor over the market's events.

It reads events up to ``head - reorg_margin`` only, so nothing it records can be undone by
a reorganisation shallower than the margin, and it stores the cursor after each range, so
a restart resumes where it stopped. It picks up ``JobCreated`` for this coordinator on its
own (``POST /jobs`` merely hurries it) and records what only the chain decides: settled,
reclaimed, cancelled. It also keeps the chain's notion of "now" for deadline checks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from contracts.models import ChainEvent
from coordinator.chain_io import AsyncChain
from coordinator.driver import new_seed
from coordinator.errors import InvalidTransition
from coordinator.signals import Signals
from coordinator.states import JobState
from coordinator.store import AsyncStore, JobRecord
from coordinator.tasks import contained
from protocol.eip712 import digest_to_cid
from protocol.ids import parse_address

log = logging.getLogger(__name__)

CURSOR = "chain"
MAX_RANGE = 2000
CHAIN_DECISIONS = {
    "JobSettled": JobState.SETTLED,
    "JobReclaimed": JobState.RECLAIMED,
    "JobCancelled": JobState.CANCELLED,
}


def job_from_event(event: ChainEvent, clock: Callable[[], float] = time.time) -> JobRecord:
    a = event.args
    now = clock()
    return JobRecord(
        job_id="0x" + bytes(a["jobId"]).hex(),
        state=JobState.CREATED,
        requester=parse_address(a["requester"]),
        coordinator=parse_address(a["coordinator"]),
        spec_cid=bytes(a["specCid"]).decode("ascii", "replace")[:128],
        redundancy=int(a["redundancy"]),
        mode=int(a["mode"]),
        price_cap=int(a["priceCap"]),
        fee=int(a["fee"]),
        assign_deadline=int(a["assignDeadline"]),
        commit_deadline=int(a["commitDeadline"]),
        settle_deadline=int(a["settleDeadline"]),
        created_block=event.block_number,
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
        self._poke = trio.Event()

    def now(self) -> float:
        """The chain's time as the next block will see it (never behind the wall clock)."""
        return max(self.block_time, time.time())

    def poke(self) -> None:
        self._poke.set()

    async def poll_once(self) -> int:
        """Read every new event up to the safe head; returns how many were applied."""
        self.head = await self.chain.block_number()
        self.block_time = float(await self.chain.now())
        safe = self.head - self.reorg_margin
        cursor = await self.store.cursor(CURSOR)
        start = self.start_block if cursor is None else cursor + 1
        applied = 0
        while start <= safe:
            end = min(safe, start + MAX_RANGE - 1)
            for event in await self.chain.get_events(start, end):
                applied += await self.apply(event)
            await self.store.set_cursor(CURSOR, end)
            start = end + 1
        return applied

    async def apply(self, event: ChainEvent) -> int:
        if event.contract != "market":
            return 0
        if event.name == "JobCreated":
            if parse_address(event.args["coordinator"]) != self.chain.address:
                return 0
            job, new = await self.store.add_job(
                job_from_event(event), {"block": event.block_number}
            )
            if new:
                log.info("job %s created on chain (block %d)", job.job_id, event.block_number)
            self.on_job(job.job_id)
            return 1
        wanted = CHAIN_DECISIONS.get(event.name)
        if wanted is None:
            return 0
        job_id = "0x" + bytes(event.args["jobId"]).hex()
        job = await self.store.find_job(job_id)
        if job is None or job.state.final:
            return 0
        fields: dict[str, object] = {}
        if event.name == "JobSettled":
            fields["settle_tx"] = job.settle_tx or event.tx_hash
            result = bytes(event.args.get("result", b""))
            if job.result_cid is None and any(result):
                fields["result_cid"] = digest_to_cid(result)
        detail = {"tx": event.tx_hash, "block": event.block_number}
        try:
            await self.store.transition(job_id, wanted, detail, **fields)
        except InvalidTransition:
            return 0
        self.signals.fire(job_id)
        return 1

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
            if event.name == "JobCreated" and "0x" + bytes(event.args["jobId"]).hex() == job_id:
                await self.apply(event)
                return await self.store.find_job(job_id)
        return None
