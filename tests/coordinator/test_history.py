"""The hourly history: ended jobs recorded once from the real driver's store, the live book
sampled, old hours folded into days, phase timings, the migration, and the API and
Prometheus figures agreeing with the store."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import inspect

from coordinator.api import create_app
from coordinator.history import HistoryConfig, HistoryRecorder, book_rows, phases, spread
from coordinator.metrics import Metrics
from coordinator.store import JobRecord, Store
from coordinator.store.history import (
    DAY,
    HOUR,
    HistoryRow,
    MarketHour,
    PriceHour,
    ProviderHour,
    RequesterHour,
    hour_of,
)
from coordinator.store.migrate import downgrade, upgrade
from devnet.harness import SPEC, Harness, harness
from protocol.api_auth import sign_request
from protocol.ids import Address, Wei
from protocol.lifecycle import JobState, Phase
from protocol.messages import FailureKind, GpuInfo
from protocol.spec_io import canonical_spec, parse_spec
from tests.coordinator.test_api import Backend

S = JobState


def settled(job: JobRecord) -> bool:
    return job.state is S.SETTLED


def _recorder(h: Harness, metrics: Metrics | None = None) -> HistoryRecorder:
    recorder = HistoryRecorder(
        h.store, h.book, time.time, metrics=None if metrics is None else metrics.history
    )
    h.driver.history = recorder
    return recorder


def _metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name} {labels} not exported")


def _sum_amounts(rows: list[ProviderHour]) -> int:
    return sum(r.earnings for r in rows)


async def test_a_settled_job_is_recorded_once_per_provider_requester_and_market(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    async with harness(tmp_path, 3, runtime_ms=90_000) as h:
        _recorder(h, metrics)
        job_id = await h.create_job(2)
        job = await h.run(job_id, settled)
        assert await h.driver.step(job_id)  # the ended job's step records it
        assert await h.driver.step(job_id)  # and a second step adds nothing
        job = await h.job(job_id)
        assert job.history_recorded
        slots = await h.slots(job_id)
        since = hour_of(time.time()) - 2 * HOUR

        providers = await h.store.history(ProviderHour, since)
        for slot in slots:
            mine = [r for r in providers if r.address == slot.address]
            assert sum(r.jobs for r in mine) == 1
            assert _sum_amounts(mine) == slot.pay == 25_000
            # 90 s revealed, a CPU-only job: slot-seconds sold, no GPU-seconds.
            assert abs(sum(r.slot_sold_s for r in mine) - 90.0) < 1e-6
            assert sum(r.gpu_sold_s for r in mine) == 0
            assert sum(r.failures for r in mine) == 0
        seated = {s.address for s in slots}
        assert {r.address for r in providers if r.jobs} == seated

        (requester,) = await h.store.history(RequesterHour, since, address=h.requester.address)
        assert requester.jobs == 1 and requester.failed == 0
        assert requester.spend == sum(s.pay or 0 for s in slots) + job.fee
        assert requester.refunds == job.refund and requester.fees == job.fee

        market = await h.store.history(MarketHour, since)
        assert sum(m.jobs for m in market) == 1
        waits = [m for m in market if m.queue_waits]
        assert len(waits) == 1
        when = phases(job, await h.store.events(job_id))
        wait = when[Phase.ASSIGN_TX_MINED] - when[Phase.QUEUED]
        assert abs(waits[0].queue_wait_s - wait) < 1e-6 and waits[0].queue_wait_max_s == wait

        # The same figures in Prometheus.
        text = metrics.render({}, 0, 0.0, 0).decode()
        for slot in slots:
            assert (
                _metric(
                    text, "gpumarket_coordinator_provider_earnings_total", provider=slot.address
                )
                == slot.pay
            )
            assert (
                _metric(
                    text, "gpumarket_coordinator_slot_sold_seconds_total", provider=slot.address
                )
                == 90.0
            )
        assert _metric(
            text, "gpumarket_coordinator_requester_spend_total", requester=h.requester.address
        ) == float(requester.spend)
        assert _metric(text, "gpumarket_coordinator_jobs_ended_total", state="settled") == 1
        assert _metric(text, "gpumarket_coordinator_queue_wait_seconds_count") == 1


async def test_phase_timings_follow_the_lifecycle_in_order(tmp_path: Path) -> None:
    async with harness(tmp_path, 3) as h:
        job_id = await h.create_job(2)
        job = await h.run(job_id, settled)
        when = phases(job, await h.store.events(job_id))
        reached = [p for p in Phase if p in when]
        assert reached == list(Phase)  # every phase, queued to settle_tx_mined
        times = [when[p] for p in reached]
        assert times == sorted(times)
        assert job.matched_at is not None and when[Phase.MATCHED] == job.matched_at


async def test_failures_are_counted_by_cause_and_a_failed_job_spends_nothing(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, 2, fail_with=(FailureKind.SANDBOX_ERROR, "no GPU")) as h:
        _recorder(h)
        job_id = await h.create_job(2)
        job = await h.run(job_id, lambda j: j.abort_tx is not None)
        await h.driver.step(job_id)
        since = hour_of(time.time()) - 2 * HOUR
        providers = await h.store.history(ProviderHour, since)
        faulted = {r.address for r in providers if r.failed_fault}
        assert faulted == {s.address for s in await h.slots(job_id)}
        assert sum(r.jobs for r in providers) == 0 and _sum_amounts(providers) == 0
        (requester,) = await h.store.history(RequesterHour, since)
        assert (requester.failed, requester.spend, requester.refunds) == (1, 0, job.refund)


async def test_samples_offer_each_providers_slots_for_the_time_between_samples(
    tmp_path: Path,
) -> None:
    now = [hour_of(time.time()) + 100.0]
    async with harness(tmp_path, 2) as h:
        recorder = HistoryRecorder(
            h.store, h.book, lambda: now[0], config=HistoryConfig(sample_s=10.0)
        )
        # The first provider runs two jobs at once: it offers two job slots.
        big = h.providers[0].address
        h.book.columns.job_capacity[h.book.columns.slot(big)] = 2
        await recorder.sample()  # the first sample only starts the clock
        now[0] += 7.0
        await recorder.sample()
        now[0] += 500.0  # a gap: counts at most two periods
        await recorder.sample()
        assert await h.store.history(ProviderHour, now[0] - HOUR) == []  # held in memory
        assert await recorder.flush() == len(h.providers)  # one row per provider and hour
        rows = await h.store.history(ProviderHour, now[0] - HOUR)
        assert {r.address for r in rows} == {p.address for p in h.providers}
        for row in rows:
            assert row.slot_offered_s == (7.0 + 20.0) * (2 if row.address == big else 1)
            assert row.gpu_offered_s == 0.0  # CPU-only providers offer no GPU-seconds
            assert row.gpu_model == "cpu"
        h.book.record_check(
            h.providers[0].address, "fp32", passed=True, tflops=2.0, devices=1, reason=""
        )
        await recorder.sample()
        await recorder.flush()
        # CPU-only providers have no GPU model to price: only GPU adverts are priced.
        assert await h.store.history(PriceHour, now[0] - HOUR) == []


async def test_price_per_verified_tflop_hour_by_model(tmp_path: Path) -> None:
    async with harness(tmp_path, 1) as h:
        address = h.providers[0].address
        advert = h.book.entries[address].advert
        gpu_advert = advert.model_copy(
            update={
                "gpus": (GpuInfo(name="H100", memory_bytes=80 << 30),),
                "fingerprint": advert.fingerprint.model_copy(update={"gpu_model": "H100"}),
            }
        )
        h.book.entries[address].advert = gpu_advert
        h.book.record_check(address, "fp32", passed=True, tflops=50.0, devices=1, reason="")
        rows = book_rows(h.book, time.time(), 10.0)
        prices = [r for r in rows if isinstance(r, PriceHour)]
        assert [(p.gpu_model, p.dtype) for p in prices] == [("H100", "fp32")]
        assert prices[0].price_sum == int(gpu_advert.price_per_gpu_hour) / 50.0
        offered = [r for r in rows if isinstance(r, ProviderHour)]
        assert sum(r.gpu_offered_s for r in offered) == 10.0


def test_old_hours_fold_into_days_and_retention_drops_the_oldest(db_url: str) -> None:
    now = time.time()
    store = Store(db_url, clock=lambda: now)
    try:
        day = (int(now) // DAY - 10) * DAY  # ten days ago: folded
        ancient = (int(now) // DAY - 100) * DAY  # past 90 days: dropped
        recent = hour_of(now) - HOUR  # kept as an hour
        rows = [
            ProviderHour(day + 3 * HOUR, HOUR, address="0xa", slot_offered_s=10, earnings=5),
            ProviderHour(day + 7 * HOUR, HOUR, address="0xa", slot_offered_s=20, earnings=7),
            ProviderHour(recent, HOUR, address="0xa", slot_offered_s=1),
            ProviderHour(ancient, HOUR, address="0xa", slot_offered_s=99),
            MarketHour(day + HOUR, HOUR, queue_waits=1, queue_wait_s=4, queue_wait_max_s=4),
            MarketHour(day + 2 * HOUR, HOUR, queue_waits=1, queue_wait_s=9, queue_wait_max_s=9),
            PriceHour(
                day, HOUR, gpu_model="H100", dtype="fp32", samples=1, price_sum=3, price_min=3
            ),
            PriceHour(
                day + HOUR,
                HOUR,
                gpu_model="H100",
                dtype="fp32",
                samples=1,
                price_sum=2,
                price_min=2,
            ),
        ]
        store.add_history(rows)
        gone = store.compact_history(7 * DAY, 90 * DAY)
        assert gone == 7  # six hours folded, one ancient row dropped
        providers = store.history(ProviderHour, 0)
        assert [(r.bucket, r.resolution, r.slot_offered_s, r.earnings) for r in providers] == [
            (day, DAY, 30.0, 12),
            (recent, HOUR, 1.0, 0),
        ]
        (market,) = store.history(MarketHour, 0)
        assert (market.resolution, market.queue_waits, market.queue_wait_s) == (DAY, 2, 13.0)
        assert market.queue_wait_max_s == 9.0
        (price,) = store.history(PriceHour, 0)
        assert (price.samples, price.price_sum, price.price_min) == (2, 5.0, 2.0)
        assert store.compact_history(7 * DAY, 90 * DAY) == 0  # nothing left to fold
    finally:
        store.close()


def test_spread_cuts_runtime_at_hour_boundaries() -> None:
    start = 10 * HOUR - 30.0
    assert spread(start, start + 90.0) == [(9 * HOUR, 30.0), (10 * HOUR, 60.0)]
    assert spread(5.0, 5.0) == []


def test_the_migration_adds_and_removes_the_history(db_url: str) -> None:
    store = Store(db_url)
    try:
        names = set(inspect(store.engine).get_table_names())
        assert {
            "history_providers",
            "history_requesters",
            "history_market",
            "history_prices",
        } <= names
        downgrade(store.engine, "0004")
        after = inspect(store.engine)
        assert "history_providers" not in after.get_table_names()
        assert "matched_at" not in {c["name"] for c in after.get_columns("jobs")}
        upgrade(store.engine)
        assert "history_recorded" in {c["name"] for c in inspect(store.engine).get_columns("jobs")}
    finally:
        store.close()


async def test_the_api_serves_the_history_and_the_phases(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, runtime_ms=90_000) as h:
        _recorder(h)
        job_id = await h.create_job(2)
        await h.run(job_id, settled)
        await h.driver.step(job_id)
        backend = Backend(h.store)
        backend.book = h.book
        transport = httpx.ASGITransport(app=create_app(backend))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
            view = (await client.get(f"/jobs/{job_id}")).json()
            assert list(view["phases"]) == [str(p) for p in Phase]
            market = (await client.get("/history/market?hours=2")).json()
            assert sum(m["jobs"] for m in market["hours"]) == 1
            assert sum(m["slot_sold_s"] for m in market["hours"]) == 180.0
            assert sum(int(m["earnings"]) for m in market["hours"]) == 50_000
            listed = (await client.get("/history/providers?hours=2")).json()["providers"]
            earned = {p["address"]: int(p["total"]["earnings"]) for p in listed}
            slots = await h.slots(job_id)
            assert {s.address: s.pay for s in slots}.items() <= earned.items()
            one = (await client.get(f"/history/providers/{slots[0].address}")).json()
            assert one["total"]["jobs"] == 1 and one["total"]["earnings"] == "25000"

            path = f"/history/requesters/{h.requester.address}"
            assert (await client.get(path)).status_code == 401  # unsigned
            other = sign_request(h.coordinator.private_key, "GET", path)
            assert (await client.get(path, headers=other)).status_code == 401
            mine = sign_request(h.requester.private_key, "GET", path)
            costs = (await client.get(path, headers=mine)).json()
            job = await h.job(job_id)
            assert costs["total"]["spend"] == str(50_000 + job.fee)

            page = await client.get("/dashboard")
            assert page.status_code == 200 and "dashboard.js" in page.text
            js = await client.get("/dashboard/dashboard.js")
            assert js.status_code == 200 and js.headers["content-type"].startswith(
                "text/javascript"
            )
            assert (await client.get("/dashboard/../store.py")).status_code == 404
            assert (await client.get("/dashboard/nothing.js")).status_code == 404


def test_the_store_adds_a_jobs_figures_only_once(db_url: str) -> None:
    from tests.coordinator.factories import job_record

    store = Store(db_url)
    try:
        job, _ = store.add_job(job_record(1))
        rows: list[HistoryRow] = [RequesterHour(0, HOUR, address="0xr", jobs=1, spend=7)]
        assert store.record_history(job.job_id, rows)
        assert not store.record_history(job.job_id, rows)
        assert not store.record_history("0x" + "ee" * 32, rows)  # no such job: nothing added
        (row,) = store.history(RequesterHour, 0)
        assert (row.jobs, row.spend) == (1, 7)
        assert store.get_job(job.job_id).history_recorded
        assert store.unrecorded_history() == []
    finally:
        store.close()


async def test_data_moved_counts_the_inputs_once_per_seat_that_ran(tmp_path: Path) -> None:
    async with harness(tmp_path, 3) as h:
        recorder = _recorder(h)
        recorder.content = h.content
        data = await h.content.add_bytes(b"x" * 5000)
        text = SPEC.replace("resources:", f"inputs:\n  - {{name: data, cid: {data}}}\nresources:")
        job_id = await h.create_job(2, spec=canonical_spec(parse_spec(text)))
        await h.run(job_id, settled)
        await h.driver.step(job_id)
        since = hour_of(time.time()) - 2 * HOUR
        (requester,) = await h.store.history(RequesterHour, since)
        # Two seats fetched the 5,000-byte input; the scripted providers' result is in no
        # IPFS node, so its size is unknown and counts nothing.
        assert requester.data_bytes == 2 * 5000


def test_compaction_folds_a_bounded_batch_per_call_and_loses_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coordinator.store import history

    monkeypatch.setattr(history, "COMPACT_BATCH", 4)
    now = time.time()
    store = Store(db_url, clock=lambda: now)
    try:
        day = (int(now) // DAY - 10) * DAY
        store.add_history(
            [ProviderHour(day + h * HOUR, HOUR, address="0xa", jobs=1) for h in range(10)]
        )
        assert [store.compact_history(7 * DAY, 90 * DAY) for _ in range(4)] == [4, 4, 2, 0]
        (folded,) = store.history(ProviderHour, 0)
        assert (folded.bucket, folded.resolution, folded.jobs) == (day, DAY, 10)
    finally:
        store.close()


def test_a_gpu_jobs_runtime_sells_gpu_seconds_cut_at_the_hour() -> None:
    from coordinator.history import seat_rows
    from coordinator.store import ProviderSlot
    from protocol.lifecycle import Outcome, SeatState
    from tests.coordinator.factories import job_record

    job = job_record(3, state=S.SETTLED, requirements={"gpus": 2})
    slot = ProviderSlot(
        job.job_id,
        0,
        Address("0x" + "33" * 20),
        "peer",
        Wei(5),
        SeatState.REVEALED,
        0.0,
        commit_hash="0x" + "44" * 32,
        runtime_ms=90_000,
        outcome=Outcome.PAID,
        pay=Wei(5),
    )
    ended = 10 * HOUR + 30.0  # 90 s of runtime, 60 s of it in the hour before
    rows = seat_rows(job, slot, ended, hour_of(ended))
    sold = {r.bucket: r.gpu_sold_s for r in rows if r.gpu_sold_s}
    assert sold == {9 * HOUR: 120.0, 10 * HOUR: 60.0}  # two GPUs
    assert sum(r.jobs for r in rows) == 1 and sum(r.earnings for r in rows) == 5
