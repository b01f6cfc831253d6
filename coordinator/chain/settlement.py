"""Submitting settlements: one at once when none is being mined, and those that become ready
meanwhile together in the next ``settleBatch`` (plus an optional window to wait for more).

Before every submission (first try or retry) the chain is asked whether each job is still
``ASSIGNED``; a job already settled is never sent again, so a retry after a lost receipt or
a restart cannot settle twice (the contract would refuse anyway, costing gas). The market
skips an invalid settlement inside a batch with ``SettlementSkipped(jobId, reason)``: its
waiter gets the reason (the error ``settle`` would have raised) and decides whether to try
again. When a whole batch reverts, its jobs are retried one by one so one bad settlement
cannot block others. Each settled job's waiter gets its ``JobSettled`` event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from contracts.errors import error_table
from contracts.models import MAX_BATCH, ChainEvent, JobStatus, Receipt, Settlement
from coordinator.chain.chain_io import AsyncChain
from protocol.errors import ChainError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class SettleResult:
    tx_hash: str | None
    already_settled: bool = False
    error: str | None = None
    settled: ChainEvent | None = None
    """The job's ``JobSettled`` event from the receipt (what the chain really paid)."""
    slashed: tuple[ChainEvent, ...] = ()
    """The job's ``ProviderSlashed`` events from the receipt (what the chain burned)."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Pending:
    settlement: Settlement
    done: trio.Event = field(default_factory=trio.Event)
    result: SettleResult | None = None


class Settler:
    def __init__(self, chain: AsyncChain, window_s: float = 0.0) -> None:
        self.chain = chain
        self.window_s = window_s
        self.batches_sent = 0
        self._send, self._receive = trio.open_memory_channel[_Pending](1024)

    async def settle(self, settlement: Settlement) -> SettleResult:
        """Queue ``settlement`` and wait until it is on chain (or refused)."""
        pending = _Pending(settlement)
        await self._send.send(pending)
        await pending.done.wait()
        assert pending.result is not None
        return pending.result

    async def run(self) -> None:
        """The batching loop; run it in the service's nursery."""
        while True:
            first = await self._receive.receive()
            batch = [first]
            # Settlements that arrive while a batch is being mined wait for the next one, so
            # batches form under load without a window; an idle market sends at once.
            await trio.sleep(self.window_s)
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await self._submit(batch)
            except Exception as exc:
                log.exception("settling %d job(s) crashed", len(batch))
                for item in batch:  # their drivers wait for an answer; they retry later
                    if not item.done.is_set():
                        item.result = SettleResult(None, error=f"settlement crashed: {exc!r}")
                        item.done.set()

    async def _still_open(self, batch: list[_Pending]) -> list[_Pending]:
        """Resolve jobs the chain already moved past ASSIGNED; return the rest."""
        open_ = []
        for item in batch:
            try:
                status, _ = await self.chain.job_status(item.settlement.job_id)
            except ChainError as exc:
                item.result = SettleResult(None, error=f"cannot read job: {exc}")
                item.done.set()
                continue
            if status is JobStatus.SETTLED:
                item.result = SettleResult(None, already_settled=True)
                item.done.set()
            elif status is not JobStatus.ASSIGNED:
                item.result = SettleResult(None, error=f"job is {status.name.lower()} on chain")
                item.done.set()
            else:
                open_.append(item)
        return open_

    async def _submit(self, batch: list[_Pending]) -> None:
        last = ""
        for attempt in range(MAX_ATTEMPTS):
            batch = await self._still_open(batch)
            if not batch:
                return
            try:
                if len(batch) == 1:
                    receipt = await self.chain.settle(batch[0].settlement)
                else:
                    receipt = await self.chain.settle_batch([p.settlement for p in batch])
            except ChainError as exc:
                log.warning(
                    "settling %d job(s) failed (attempt %d): %s", len(batch), attempt + 1, exc
                )
                if len(batch) > 1:
                    for item in batch:  # isolate the culprit
                        await self._submit([item])
                    return
                last = str(exc)
                await trio.sleep(0.2 * (attempt + 1))
                continue
            self.batches_sent += 1
            for item in batch:
                item.result = outcome_in(receipt, item.settlement)
                item.done.set()
            return
        for item in await self._still_open(batch):
            item.result = SettleResult(None, error=last)
            item.done.set()


def reason_name(selector: bytes) -> str:
    """The custom error a ``SettlementSkipped`` reason selects (hex when unknown)."""
    try:
        known = error_table().get(bytes(selector))
    except Exception:  # the artifact may be missing or older than the contract
        known = None
    return known[0].__name__ if known is not None else "0x" + bytes(selector).hex()


def outcome_in(receipt: Receipt, settlement: Settlement) -> SettleResult:
    """What a mined settle/settleBatch did to one settlement: settled, or skipped and why."""
    key = settlement.job_id
    for event in receipt.named("SettlementSkipped"):
        if event.job_id == key:
            why = reason_name(event.args["reason"])
            return SettleResult(None, error=f"settlement skipped by the market: {why}")
    settled = next((e for e in receipt.named("JobSettled") if e.job_id == key), None)
    slashed = tuple(e for e in receipt.named("ProviderSlashed") if e.job_id == key)
    return SettleResult(receipt.tx_hash, settled=settled, slashed=slashed)
