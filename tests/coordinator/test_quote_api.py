"""``POST /quote`` (a dry-run match) and ``GET /providers`` (the live book) over the API."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from coordinator.api import create_app
from coordinator.api.quote import QUOTE_MAX_BYTES
from coordinator.errors import UnknownJob
from coordinator.matching.book import ProviderBook
from coordinator.matching.matcher import exact_price, seat_rate
from coordinator.matching.requirements import requirements_for
from coordinator.metrics import Metrics
from coordinator.signals import Signals
from coordinator.store import AsyncStore, JobRecord, Store
from protocol.identity import Identity
from protocol.messages import Fingerprint
from protocol.spec_io import parse_spec
from tests.protocol.factories import advert

PROVIDERS = [Identity.from_private_key("0x" + f"{i + 0x61:02x}" * 32) for i in range(4)]
RATES = [3_000_000, 1_000_000, 2_000_000, 50_000_000]
"""Per GPU-hour; the last is above every test spec's cap."""

SPEC = """
name: quoted
runtime: {kind: torch, entrypoint: main.py}
resources: {gpus: 1}
verification: {redundancy: 2, compare: exact}
price: {max_per_provider: "2.50"}
timeout: 30m
expected_duration: 20m
"""


class Backend:
    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self.book = ProviderBook(time.time)
        self.signals = Signals()
        self.metrics = Metrics()

    async def notice(self, job_id: str) -> JobRecord:
        raise UnknownJob(job_id)

    def chain_block(self) -> int:
        return 1

    def settle_batches(self) -> int:
        return 0


@pytest.fixture
async def api(tmp_path: Path):
    store = AsyncStore(Store(f"sqlite:///{tmp_path / 'quote.sqlite'}"))
    backend = Backend(store)
    for i, (who, rate) in enumerate(zip(PROVIDERS, RATES, strict=True)):
        backend.book.accept(
            advert(
                provider=who.address,
                peer_id=who.peer_id,
                price_per_gpu_hour=rate,
                price_per_cpu_hour=rate // 10,
                expires_at=int(time.time()) + 60,
                fingerprint=Fingerprint(
                    backend="cuda", gpu_model="H100", driver="550.54", cuda="12.4", torch="2.3.0"
                ),
            )
        )
        backend.book.set_chain_facts(who.address, registered=True, free_stake=10**12, group=i + 1)
    backend.book.record_check(
        PROVIDERS[1].address, "fp32", passed=True, tflops=40.0, devices=1, reason=""
    )
    transport = httpx.ASGITransport(app=create_app(backend, stake_factor=5))
    async with httpx.AsyncClient(transport=transport, base_url="http://coordinator") as client:
        yield client, backend
    store.sync.close()


def expected_price(rate: int) -> int:
    spec = parse_spec(SPEC)
    req = requirements_for(spec, count=1, price_cap=spec.price.max_per_provider, exact=True)
    return exact_price(seat_rate(rate, rate // 10, req), req)


async def test_quote_prices_each_redundancy_choice_without_reserving(api) -> None:
    client, backend = api
    version = backend.book.columns.version
    r = await client.post("/quote", json={"spec": SPEC})
    assert r.status_code == 200, r.text
    quote = r.json()
    assert quote["price_cap"] == "2500000" and quote["duration_s"] == 1200
    options = {o["redundancy"]: o for o in quote["options"]}
    assert list(options) == ["auto", "2", "3"]
    assert options["2"]["requested"] and not options["auto"]["requested"]
    # Cheapest first: rates 1.0 and 2.0 tokens per GPU-hour for 20 minutes.
    two = options["2"]
    assert two["start"] == "now"
    assert [p["address"] for p in two["providers"]] == [PROVIDERS[1].address, PROVIDERS[2].address]
    assert [int(p["price"]) for p in two["providers"]] == [
        expected_price(RATES[1]),
        expected_price(RATES[2]),
    ]
    assert int(two["total"]) == expected_price(RATES[1]) + expected_price(RATES[2])
    assert int(options["3"]["total"]) == sum(expected_price(r) for r in RATES[:3])
    # The expensive provider is filtered, with the matcher's reason.
    reasons = {c["address"]: c["reason"] for c in two["candidates"]}
    assert reasons[PROVIDERS[3].address] == "filtered: price above the job's cap"
    assert options["auto"]["start"] == "now" and len(options["auto"]["providers"]) == 1
    # Nothing reserved, nothing offered: the book is as it was.
    assert backend.book.columns.version == version
    assert int(backend.book.columns.reserved_jobs[: backend.book.columns.size].sum()) == 0


async def test_quote_says_queued_and_unmatched_with_reasons(api) -> None:
    client, backend = api
    for who in PROVIDERS:
        backend.book.columns.mark_full(who.address, time.time() + 1)
    options = {
        o["redundancy"]: o
        for o in (await client.post("/quote", json={"spec": SPEC})).json()["options"]
    }
    assert options["2"]["start"] == "queued" and len(options["2"]["providers"]) == 2
    assert options["2"]["filtered"]["busy (no free job slot)"] == 4
    greedy = SPEC.replace('"2.50"', '"0.01"')
    options = {
        o["redundancy"]: o
        for o in (await client.post("/quote", json={"spec": greedy})).json()["options"]
    }
    assert options["auto"]["start"] == "unmatched" and options["auto"]["total"] is None
    assert options["auto"]["providers"] == []


async def test_quote_refuses_bad_specs_and_large_bodies(api) -> None:
    client, _ = api
    r = await client.post("/quote", json={"spec": "name: x\nruntime: {kind: torch}\n"})
    assert r.status_code == 422 and r.json()["error"] in ("InvalidSpec", "SpecError")
    r = await client.post(
        "/quote",
        content=json.dumps({"spec": "x" * QUOTE_MAX_BYTES}),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    r = await client.post("/quote", content=b"[1]", headers={"content-type": "application/json"})
    assert r.status_code == 400


async def test_providers_table_is_bounded_and_cheapest_first(api) -> None:
    client, _ = api
    body = (await client.get("/providers", params={"limit": 2})).json()
    assert body["total"] == 4
    rows = body["providers"]
    assert [r["address"] for r in rows] == [PROVIDERS[1].address, PROVIDERS[2].address]
    first = rows[0]
    assert first["price_per_gpu_hour"] == "1000000" and first["price_per_cpu_hour"] == "100000"
    assert first["gpu_model"] == "H100"
    assert first["gpu_count"] == 1 and first["memory_bytes"] == 80 * 2**30
    assert first["verified"] == ["fp32"] and first["tflops"]["fp32"] == 40.0
    assert first["free_slots"] == 1 and first["torch"] == "2.3.0" and first["cuda"] == "12.4"
    assert (await client.get("/providers", params={"limit": 0})).status_code == 422


async def test_quote_says_who_could_never_run_the_spec_and_why(api) -> None:
    client, _ = api
    quote = (await client.post("/quote", json={"spec": SPEC})).json()
    assert quote["capable"] == 4 and quote["incapable"] == {}
    picky = SPEC.replace(
        "resources: {gpus: 1}", 'resources: {gpus: 1, requires: {min_driver: "560"}}'
    )
    r = await client.post("/quote", json={"spec": picky})
    assert r.status_code == 200, r.text
    quote = r.json()
    assert quote["capable"] == 0
    assert quote["incapable"] == {"does not meet requires: vendor nvidia, driver >= 560": 4}
    options = {o["redundancy"]: o for o in quote["options"]}
    assert options["2"]["start"] == "unmatched"
    # Each provider's own reason, even though nobody matched.
    reasons = {c["address"]: c["reason"] for c in options["2"]["candidates"]}
    assert reasons == {who.address: "filtered: driver 550.54 < 560" for who in PROVIDERS}


async def test_quote_filters_providers_whose_input_limit_is_lower(api) -> None:
    client, backend = api
    limited = backend.book.find(PROVIDERS[1].address)
    assert limited is not None
    assert backend.book.accept(limited.model_copy(update={"max_input_bytes": 1 << 20}))

    def two(quote: dict) -> dict:
        return {o["redundancy"]: o for o in quote["options"]}["2"]

    unknown = (await client.post("/quote", json={"spec": SPEC})).json()
    assert PROVIDERS[1].address in [p["address"] for p in two(unknown)["providers"]]
    big = (await client.post("/quote", json={"spec": SPEC, "input_bytes": 2 << 20})).json()
    assert [p["address"] for p in two(big)["providers"]] == [
        PROVIDERS[2].address,
        PROVIDERS[0].address,
    ]
    reasons = {c["address"]: c["reason"] for c in two(big)["candidates"]}
    assert reasons[PROVIDERS[1].address] == "filtered: input 2MiB exceeds its 1MiB input limit"
    assert big["capable"] == unknown["capable"] - 1
    assert big["incapable"]["input 2MiB exceeds its input limit"] == 1
    bad = await client.post("/quote", json={"spec": SPEC, "input_bytes": -1})
    assert bad.status_code == 422
