"""The hourly history over HTTP: market, providers, one provider, one requester (signed).

Periods are hours (``resolution`` 3600) for the last week and days (86400) before that.
Amounts are integer token base units written as strings; seconds are floats.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from fastapi import FastAPI, Query, Request
from pydantic import BaseModel, Field

from coordinator.errors import NotAuthorized
from coordinator.store import AsyncStore
from coordinator.store.history import (
    HOUR,
    MarketHour,
    PriceHour,
    ProviderHour,
    RequesterHour,
    hour_of,
    summed,
)
from protocol.api_auth import verify_request
from protocol.ids import parse_address

MAX_HOURS = 24 * 90


class HistoryBackend(Protocol):
    store: AsyncStore


class ProviderHourView(BaseModel):
    bucket: int = Field(description="period start, unix seconds")
    resolution: int = Field(description="period length in seconds (3600 or 86400)")
    gpu_offered_s: float
    gpu_sold_s: float
    gpu_idle_s: float
    slot_offered_s: float = Field(description="job-slot-seconds offered (CPU-only providers)")
    slot_sold_s: float
    utilization: float | None = Field(
        description="sold / offered: GPU-seconds, or slot-seconds without GPUs"
    )
    jobs: int = Field(description="seats that delivered a result")
    failures: dict[str, int] = Field(description="seats failed, by cause")
    earnings: str

    @classmethod
    def of(cls, r: ProviderHour) -> ProviderHourView:
        return cls(
            bucket=r.bucket,
            resolution=r.resolution,
            gpu_offered_s=r.gpu_offered_s,
            gpu_sold_s=r.gpu_sold_s,
            gpu_idle_s=r.gpu_idle_s,
            slot_offered_s=r.slot_offered_s,
            slot_sold_s=r.slot_sold_s,
            utilization=r.utilization,
            jobs=r.jobs,
            failures={
                "timeout": r.failed_timeout,
                "fault": r.failed_fault,
                "job": r.failed_job,
                "withheld": r.withheld,
                "slashed": r.slashed,
            },
            earnings=str(r.earnings),
        )


class ProviderHistory(BaseModel):
    address: str
    gpu_model: str
    since: int = Field(description="the window's first period")
    total: ProviderHourView = Field(description="the whole window summed (bucket: its start)")
    hours: list[ProviderHourView]


class ProvidersHistory(BaseModel):
    since: int
    providers: list[ProviderHistory]


class MarketHourView(BaseModel):
    bucket: int
    resolution: int
    jobs: int = Field(description="jobs that ended")
    failed: int
    queue_waits: int
    queue_wait_mean_s: float | None
    queue_wait_max_s: float
    gpu_offered_s: float
    gpu_sold_s: float
    slot_offered_s: float
    slot_sold_s: float
    earnings: str = Field(description="paid to providers")


class PriceView(BaseModel):
    bucket: int
    resolution: int
    gpu_model: str
    dtype: str
    samples: int
    price_mean: float | None = Field(description="token base units per verified TFLOP-hour")
    price_min: float | None


class MarketHistory(BaseModel):
    since: int
    hours: list[MarketHourView]
    prices: list[PriceView]


class RequesterHourView(BaseModel):
    bucket: int
    resolution: int
    jobs: int
    failed: int
    spend: str = Field(description="seat pay plus the coordinator's fee, for settled jobs")
    refunds: str
    fees: str
    data_bytes: int

    @classmethod
    def of(cls, r: RequesterHour) -> RequesterHourView:
        return cls(
            bucket=r.bucket,
            resolution=r.resolution,
            jobs=r.jobs,
            failed=r.failed,
            spend=str(r.spend),
            refunds=str(r.refunds),
            fees=str(r.fees),
            data_bytes=r.data_bytes,
        )


class RequesterHistory(BaseModel):
    address: str
    since: int
    total: RequesterHourView
    hours: list[RequesterHourView]


def _since(hours: int) -> int:
    return hour_of(time.time()) - (hours - 1) * HOUR


def _total(rows: Sequence[ProviderHour], address: str, since: int) -> ProviderHour:
    flat = [ProviderHour(since, 0, **_fields(r, address)) for r in rows]
    return summed(flat)[0] if flat else ProviderHour(since, 0, address=address)


def _fields(r: ProviderHour | RequesterHour, address: str) -> dict[str, Any]:
    out = {k: v for k, v in r.to_row().items() if k not in ("bucket", "resolution")}
    for name in r.AMOUNTS:
        out[name] = int(out[name])
    out["address"] = address
    return out


def provider_history(rows: Sequence[ProviderHour], address: str, since: int) -> ProviderHistory:
    model = next((r.gpu_model for r in reversed(rows) if r.gpu_model), "")
    return ProviderHistory(
        address=address,
        gpu_model=model,
        since=since,
        total=ProviderHourView.of(_total(rows, address, since)),
        hours=[ProviderHourView.of(r) for r in rows],
    )


def market_history(
    market: Sequence[MarketHour],
    providers: Sequence[ProviderHour],
    prices: Sequence[PriceHour],
    since: int,
) -> MarketHistory:
    by_period: dict[tuple[int, int], tuple[MarketHour, ProviderHour]] = {}
    for m in market:
        by_period[(m.bucket, m.resolution)] = (m, ProviderHour(m.bucket, m.resolution))
    for p in providers:
        key = (p.bucket, p.resolution)
        m, total = by_period.get(key, (MarketHour(*key), ProviderHour(*key)))
        by_period[key] = (m, summed([total, ProviderHour(*key, **_fields(p, ""))])[0])
    hours = [
        MarketHourView(
            bucket=m.bucket,
            resolution=m.resolution,
            jobs=m.jobs,
            failed=m.failed,
            queue_waits=m.queue_waits,
            queue_wait_mean_s=m.queue_wait_mean_s,
            queue_wait_max_s=m.queue_wait_max_s,
            gpu_offered_s=p.gpu_offered_s,
            gpu_sold_s=p.gpu_sold_s,
            slot_offered_s=p.slot_offered_s,
            slot_sold_s=p.slot_sold_s,
            earnings=str(p.earnings),
        )
        for _, (m, p) in sorted(by_period.items())
    ]
    return MarketHistory(
        since=since,
        hours=hours,
        prices=[
            PriceView(
                bucket=r.bucket,
                resolution=r.resolution,
                gpu_model=r.gpu_model,
                dtype=r.dtype,
                samples=r.samples,
                price_mean=r.price_mean,
                price_min=r.price_min,
            )
            for r in prices
        ],
    )


def install(app: FastAPI, backend: HistoryBackend, errors: dict[int | str, Any]) -> None:
    """Add the ``/history/...`` routes to ``app``."""
    store = backend.store
    window = Query(default=24, ge=1, le=MAX_HOURS, description="hours back from now")

    @app.get("/history/market", response_model=MarketHistory, responses=errors)
    async def history_market(hours: int = window) -> MarketHistory:
        """Market-wide periods: jobs ended, queue wait, offered and sold seconds of every
        provider, earnings, and prices per verified TFLOP-hour by GPU model and dtype."""
        since = _since(hours)
        return market_history(
            await store.history(MarketHour, since),
            await store.history(ProviderHour, since),
            await store.history(PriceHour, since),
            since,
        )

    @app.get("/history/providers", response_model=ProvidersHistory, responses=errors)
    async def history_providers(hours: int = window) -> ProvidersHistory:
        """Every provider with periods in the window: its periods and their total."""
        since = _since(hours)
        rows: dict[str, list[ProviderHour]] = {}
        for r in await store.history(ProviderHour, since):
            rows.setdefault(r.address, []).append(r)
        return ProvidersHistory(
            since=since,
            providers=[provider_history(v, k, since) for k, v in sorted(rows.items())],
        )

    @app.get("/history/providers/{address}", response_model=ProviderHistory, responses=errors)
    async def history_provider(address: str, hours: int = window) -> ProviderHistory:
        who = parse_address(address[:64])
        since = _since(hours)
        return provider_history(await store.history(ProviderHour, since, address=who), who, since)

    @app.get("/history/requesters/{address}", response_model=RequesterHistory, responses=errors)
    async def history_requester(
        address: str, request: Request, hours: int = window
    ) -> RequesterHistory:
        """A requester's own costs; only that requester may read them (signed request)."""
        who = parse_address(address[:64])
        signer = verify_request(dict(request.headers), "GET", request.url.path)
        if signer != who:
            raise NotAuthorized(f"only {who} may read its own costs")
        since = _since(hours)
        rows = await store.history(RequesterHour, since, address=who)
        flat = [RequesterHour(since, 0, **_fields(r, who)) for r in rows]
        total = summed(flat)[0] if flat else RequesterHour(since, 0, address=who)
        return RequesterHistory(
            address=who,
            since=since,
            total=RequesterHourView.of(total),
            hours=[RequesterHourView.of(r) for r in rows],
        )
