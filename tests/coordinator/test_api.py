"""The HTTP API over an in-process backend (real store, no chain): routes, shapes, errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import trio
from pydantic import BaseModel

from coordinator.api import create_app
from coordinator.chain.billing import record_settlement, record_slash
from coordinator.errors import NotOurJob, UnknownJob
from coordinator.matching.book import ProviderBook
from coordinator.metrics import Metrics
from coordinator.signals import Signals
from coordinator.store import AsyncStore, JobRecord, ProviderSlot, Store
from protocol.api_auth import sign_request
from protocol.identity import Identity
from protocol.ids import Wei
from protocol.lifecycle import JobState, SeatState
from protocol.views import Explanation, Health, JobAccepted, JobList, JobView, Logs, Providers
from tests.coordinator.factories import job_record
from tests.protocol.factories import PROVIDER, advert

REQUESTER = Identity.from_private_key("0x" + "44" * 32)
OTHER = Identity.from_private_key("0x" + "55" * 32)
KNOWN = "0x" + f"{1:064x}"
FOREIGN = "0x" + f"{2:064x}"


class Backend:
    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self.book = ProviderBook(time.time)
        self.signals = Signals()
        self.metrics = Metrics()
        self.noticed: list[str] = []

    async def notice(self, job_id: str) -> JobRecord:
        if job_id == FOREIGN:
            raise NotOurJob(job_id, OTHER.address)
        job = await self.store.find_job(job_id)
        if job is None:
            raise UnknownJob(job_id)
        self.noticed.append(job_id)
        return job

    def chain_block(self) -> int:
        return 42

    def settle_batches(self) -> int:
        return 0


@pytest.fixture
async def api(tmp_path: Path):
    store = AsyncStore(Store(f"sqlite:///{tmp_path / 'api.sqlite'}"))
    backend = Backend(store)
    job, _ = await store.add_job(job_record(1, requester=REQUESTER.address))
    await store.put_slots(
        [
            ProviderSlot(
                job.job_id, 0, PROVIDER.address, PROVIDER.peer_id, Wei(5), SeatState.ASSIGNED, 0.0
            )
        ]
    )
    await store.save_explanation(
        job.job_id,
        [
            {
                "address": PROVIDER.address,
                "peer_id": PROVIDER.peer_id,
                "score": 1.5,
                "chosen": True,
                "reason": "chosen: rank 1",
            }
        ],
    )
    await store.add_log(job.job_id, PROVIDER.address, "[stdout] hello")
    transport = httpx.ASGITransport(app=create_app(backend))
    async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as client:
        yield client, backend
    store.sync.close()


async def test_post_jobs_is_idempotent_and_maps_errors(api) -> None:
    client, backend = api
    for _ in range(2):
        r = await client.post("/jobs", json={"job_id": KNOWN})
        assert r.status_code == 202 and r.json() == {"job_id": KNOWN, "state": "created"}
    assert backend.noticed == [KNOWN, KNOWN]
    r = await client.post("/jobs", json={"job_id": "0x" + "ab" * 32})
    assert r.status_code == 404 and r.json()["error"] == "JobNotFound"
    r = await client.post("/jobs", json={"job_id": FOREIGN})
    assert r.status_code == 409 and r.json()["error"] == "NotOurJob"
    r = await client.post("/jobs", json={"job_id": "nope"})
    assert r.status_code == 422 and set(r.json()) == {"error", "detail"}


async def test_job_view_has_the_contract_shape(api) -> None:
    client, _ = api
    r = await client.get(f"/jobs/{KNOWN}")
    assert r.status_code == 200
    view = r.json()
    assert set(view) == {
        "job_id",
        "state",
        "requester",
        "spec_cid",
        "redundancy",
        "created_at",
        "updated_at",
        "result_cid",
        "failure",
        "providers",
        "settle_tx",
        "fee",
        "refund",
        "abort_tx",
        "price_cap",
        "phases",
    }
    # Created, and a seat chosen (the fixture stored one): queued and matched so far.
    assert set(view["phases"]) == {"queued", "matched"}
    assert view["phases"]["queued"] == view["created_at"] <= view["phases"]["matched"]
    assert set(view["providers"][0]) == {
        "address",
        "peer_id",
        "price",
        "state",
        "commit_hash",
        "result_cid",
        "outcome",
        "detail",
        "seat",
        "rate_per_hour",
        "assigned_at",
        "runtime_ms",
        "billed_ms",
        "pay",
        "slashed",
    }
    assert (await client.get(f"/jobs/0x{'cd' * 32}")).status_code == 404
    assert (await client.get("/jobs/0x12")).status_code == 400


async def test_views_show_each_seats_rate_billed_runtime_pay_and_slash(api) -> None:
    client, backend = api
    store = backend.store
    loser = OTHER.address
    await store.put_slots(
        [
            ProviderSlot(
                KNOWN,
                1,
                loser,
                OTHER.peer_id,
                Wei(7),
                SeatState.REVEALED,
                0.0,
                rate_per_hour=Wei(9),
            )
        ]
    )
    await store.update_slot(KNOWN, 0, state=SeatState.RUNNING, rate_per_hour=3_600_000)
    await store.update_slot(KNOWN, 0, state=SeatState.COMMITTED)
    await store.update_slot(KNOWN, 0, state=SeatState.REVEALED, runtime_ms=120_000)
    # What JobSettled (pay << 64 | billed) and ProviderSlashed said:
    await record_settlement(
        store,
        KNOWN,
        {"winners": 1, "slashMask": 2, "paidAndBilled": [(5 << 64) | 60_000, 0], "refund": 123},
    )
    await record_slash(store, KNOWN, loser, 35)
    view = (await client.get(f"/jobs/{KNOWN}")).json()
    paid, slashed = view["providers"]
    assert (paid["seat"], paid["rate_per_hour"], paid["runtime_ms"]) == (0, "3600000", 120_000)
    assert (paid["billed_ms"], paid["pay"], paid["outcome"]) == (60_000, "5", "paid")
    assert (slashed["outcome"], slashed["slashed"], slashed["pay"]) == ("slashed", "35", None)
    assert view["refund"] == "123" and view["fee"] == str(job_record(1).fee)
    explain = (await client.get(f"/jobs/{KNOWN}/explain")).json()
    assert [(s["seat"], s["billed_ms"], s["pay"], s["slashed"]) for s in explain["seats"]] == [
        (0, 60_000, "5", None),
        (1, None, None, "35"),
    ]
    assert explain["declines"] == []


async def test_listing_filters_by_requester_and_state(api) -> None:
    client, _ = api
    assert (
        len((await client.get("/jobs", params={"requester": REQUESTER.address})).json()["jobs"])
        == 1
    )
    assert (await client.get("/jobs", params={"requester": OTHER.address})).json() == {"jobs": []}
    assert (await client.get("/jobs", params={"state": "settled"})).json() == {"jobs": []}
    assert (await client.get("/jobs", params={"state": "bogus"})).status_code == 422
    assert (await client.get("/jobs", params={"requester": "0xnot"})).status_code == 400


async def test_logs_need_the_requesters_signature(api) -> None:
    client, _ = api
    path = f"/jobs/{KNOWN}/logs"
    assert (await client.get(path)).status_code == 401
    stranger = sign_request(OTHER.private_key, "GET", path)
    r = await client.get(path, headers=stranger)
    assert r.status_code == 401 and r.json()["error"] == "NotAuthorized"
    r = await client.get(path, headers=sign_request(REQUESTER.private_key, "GET", path))
    assert r.status_code == 200
    assert r.json()["lines"][0]["text"] == "[stdout] hello"
    stale = sign_request(REQUESTER.private_key, "GET", path, now=time.time() - 3600)
    assert (await client.get(path, headers=stale)).status_code == 401


async def test_explain_providers_health_metrics(api) -> None:
    client, backend = api
    explain = (await client.get(f"/jobs/{KNOWN}/explain")).json()
    assert explain["job_id"] == KNOWN and explain["candidates"][0]["chosen"] is True
    assert explain["candidates"][0]["checks"] == {}  # not in the book: nothing to show
    backend.book.accept(advert(expires_at=int(time.time()) + 30))
    backend.book.record_check(
        PROVIDER.address, "bf16", passed=True, tflops=700.0, devices=2, reason=""
    )
    backend.book.record_check(
        PROVIDER.address, "fp16", passed=False, tflops=650.0, devices=2, reason="took 9s"
    )
    # Each candidate's latest challenges, per dtype, from the live book.
    checks = (await client.get(f"/jobs/{KNOWN}/explain")).json()["candidates"][0]["checks"]
    assert checks["bf16"]["passed"] is True and checks["bf16"]["devices"] == 2
    assert checks["fp16"] == {
        "passed": False,
        "tflops": 650.0,
        "devices": 2,
        "at": pytest.approx(time.time(), abs=60),
        "reason": "took 9s",
    }
    providers = (await client.get("/providers")).json()["providers"]
    assert providers[0]["address"] == PROVIDER.address
    assert providers[0]["checks"]["bf16"]["tflops"] == 700.0
    assert providers[0]["tflops"]["bf16"] == 700.0 and "fp16" not in providers[0]["tflops"]
    assert {
        "address",
        "peer_id",
        "multiaddrs",
        "gpus",
        "tflops",
        "price_per_gpu_hour",
        "price_per_cpu_hour",
        "reputation",
        "free_gpus",
        "last_seen",
    } <= set(providers[0])
    assert (await client.get("/health")).json() == {
        "ok": True,
        "chain_block": 42,
        "providers": 1,
        "ipfs_peers": [],
        "result_retention_s": 0.0,
    }
    text = (await client.get("/metrics")).text
    assert 'gpumarket_jobs{state="created"} 1.0' in text and "gpumarket_providers 1.0" in text
    assert "gpumarket_match_latency_seconds_bucket" in text
    assert "/jobs/{job_id}/events" in (await client.get("/openapi.json")).json()["paths"]


async def test_event_stream_replays_history_and_ends_at_a_final_state(api) -> None:
    client, backend = api

    async def finish() -> None:
        await trio.sleep(0.2)
        await backend.store.transition(KNOWN, JobState.ASSIGNED)
        backend.signals.fire(KNOWN)
        await trio.sleep(0.1)
        await backend.store.transition(KNOWN, JobState.CANCELLED)
        backend.signals.fire(KNOWN)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(finish)
        with trio.fail_after(10):
            r = await client.get(f"/jobs/{KNOWN}/events")
    assert r.headers["content-type"].startswith("text/event-stream")
    states = [
        json.loads(line[6:])["state"] for line in r.text.splitlines() if line.startswith("data: ")
    ]
    assert states == ["created", "assigned", "cancelled"]


async def test_the_wallets_view_models_read_back_exactly_what_the_api_sent(api) -> None:
    """The wallet parses replies with ``protocol.views`` and prints them with ``--json``:
    parsing and dumping again must give back the coordinator's JSON, field for field."""
    client, backend = api
    backend.book.accept(advert(expires_at=int(time.time()) + 30))
    path = f"/jobs/{KNOWN}/logs"
    signed = sign_request(REQUESTER.private_key, "GET", path)
    replies: list[tuple[type[BaseModel], httpx.Response]] = [
        (JobView, await client.get(f"/jobs/{KNOWN}")),
        (JobList, await client.get("/jobs")),
        (Explanation, await client.get(f"/jobs/{KNOWN}/explain")),
        (Providers, await client.get("/providers")),
        (Health, await client.get("/health")),
        (Logs, await client.get(path, headers=signed)),
        (JobAccepted, await client.post("/jobs", json={"job_id": KNOWN})),
    ]
    for model, r in replies:
        assert r.status_code < 300, (model.__name__, r.text)
        sent = r.json()
        assert model.model_validate(sent).model_dump(mode="json") == sent, model.__name__
    assert replies[0][1].json()["providers"], "a seat is shown"
    assert replies[3][1].json()["providers"], "a provider is shown"
