"""The chain client for trio code: every call runs in a worker thread, one at a time.

One thread at a time keeps this coordinator's transactions in nonce order without relying
on anything but the bindings' own nonce counter; reads share the same lane, which is
plenty for a coordinator's rate of calls.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from contracts.client import ChainClient
from contracts.errors import InsufficientGasMoney
from contracts.models import (
    AcceptedSeat,
    ChainEvent,
    JobInfo,
    JobStatus,
    JobTerms,
    OnChainEntry,
    ProviderInfo,
    Receipt,
    Seat,
    Settlement,
)
from protocol.ids import Address, JobId

T = TypeVar("T")


class AsyncChain:
    def __init__(self, client: ChainClient) -> None:
        self.client = client
        self._limiter = trio.CapacityLimiter(1)

    @property
    def address(self) -> Address:
        return self.client.address

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter)

    async def block_number(self) -> int:
        return await self._run(self.client.block_number)

    async def now(self) -> int:
        return await self._run(self.client.now)

    async def get_events(self, from_block: int, to_block: int) -> list[ChainEvent]:
        return await self._run(self.client.get_events, from_block, to_block)

    async def block_hash(self, number: int) -> bytes | None:
        return await self._run(self.client.block_hash, number)

    async def forget_job(self, job_id: JobId) -> None:
        await self._run(self.client.forget_job, job_id)

    async def gas_shortfall(self, gas: int) -> InsufficientGasMoney | None:
        return await self._run(self.client.gas_shortfall, gas)

    async def get_job(self, job_id: JobId) -> JobInfo:
        return await self._run(self.client.get_job, job_id)

    async def job_status(self, job_id: JobId) -> tuple[JobStatus, int]:
        """Status and number of seats (one storage read)."""
        return await self._run(self.client.job_status, job_id)

    async def job_terms(self, job_id: JobId) -> JobTerms:
        return await self._run(self.client.job_terms, job_id)

    async def get_seats(self, job_id: JobId) -> list[Seat]:
        return await self._run(self.client.get_seats, job_id)

    async def on_chain_entry(self, job_id: JobId, seat: int) -> OnChainEntry:
        return await self._run(self.client.on_chain_entry, job_id, seat)

    async def provider_info(self, provider: str) -> ProviderInfo:
        return await self._run(self.client.provider_info, provider)

    async def assign(self, job_id: JobId, offers: list[AcceptedSeat]) -> Receipt:
        return await self._run(self.client.assign, job_id, offers)

    async def abort(self, job_id: JobId) -> Receipt:
        return await self._run(self.client.abort, job_id)

    async def settle(self, settlement: Settlement) -> Receipt:
        return await self._run(self.client.settle, settlement)

    async def settle_batch(self, settlements: list[Settlement]) -> Receipt:
        return await self._run(self.client.settle_batch, settlements)
