"""The coordinator end to end on a real Anvil with the deployed contracts and real libp2p.

Providers are scripted (devnet/scripted_provider.py) but speak the real protocol:
signed adverts on gossipsub, offers (answered with a signed EIP-712 Accept), assignments and
reveal requests on JOB_PROTOCOL, signed EIP-712 commitments on REPORT_PROTOCOL (answered with
the coordinator's CommitReceipt). The chain checks every signature at assign and settlement.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import trio

from contracts.models import JobStatus
from coordinator.service import Coordinator
from devnet.anvil import AnvilNode
from devnet.scripted_provider import FakeProvider, run_provider
from protocol.ids import JobId
from tests.coordinator.market import Market, deploy_market

pytestmark = pytest.mark.integration


@pytest.fixture
def market(chain: AnvilNode) -> Market:
    return deploy_market(chain, providers=4)


async def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.1)


async def wait_ready_book(coord: Coordinator, count: int) -> None:
    async def ready() -> bool:
        return sum(1 for e in coord.book.entries.values() if e.registered) >= count

    await wait_for(ready, 30, "providers in the book")


async def job_state(http: httpx.AsyncClient, job_id: str) -> dict:
    response = await http.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def wait_state(
    http: httpx.AsyncClient, job_id: str, states: set[str], timeout: float = 60
) -> dict:
    found: dict = {}

    async def reached() -> bool:
        nonlocal found
        found = await job_state(http, job_id)
        return found["state"] in states

    await wait_for(reached, timeout)
    return found


def hex_id(job_id: JobId) -> str:
    return "0x" + job_id.hex()


async def start_providers(
    stack: AsyncExitStack, market: Market, coord: Coordinator, results: list[bytes], **kw
) -> list[FakeProvider]:
    providers = []
    for identity, result in zip(market.providers, results, strict=False):
        fake = FakeProvider(
            identity,
            market.domain,
            chain=market.client(identity),
            result=result,
            **kw.get(identity.address, {}),
        )
        providers.append(await stack.enter_async_context(run_provider(fake, coord.multiaddr)))
    return providers


@pytest.mark.timeout(180)
async def test_redundancy_two_job_is_matched_assigned_settled_and_paid(
    market: Market, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        coord = await stack.enter_async_context(
            Coordinator(market.settings(tmp_path), content=market.content)
        )
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=coord.http_url, timeout=10)
        )
        await start_providers(stack, market, coord, [b"same"] * 3)
        await wait_ready_book(coord, 3)
        job_id = await market.create_job(redundancy=2)
        response = await http.post("/jobs", json={"job_id": hex_id(job_id)})
        assert response.status_code == 202, response.text
        view = await wait_state(http, hex_id(job_id), {"settled", "failed"})
        assert view["state"] == "settled", view
        assert view["settle_tx"] and view["result_cid"]
        results = coord.results
        assert results is not None  # COORDINATOR_RESULT_RETENTION_S is on by default

        async def kept() -> bool:
            return view["result_cid"] in results.holds

        await wait_for(kept, 10, "the result kept by the coordinator's node")
        assert (tmp_path / "result-pins.json").exists()
        paid = [p for p in view["providers"] if p["outcome"] == "paid"]
        assert len(paid) == 2
        client = market.client(market.requester)
        assert await trio.to_thread.run_sync(client.job_status, job_id) == (JobStatus.SETTLED, 2)
        for p in paid:
            info = await trio.to_thread.run_sync(client.provider_info, p["address"])
            # Paid for time used: 1 s at the provider's rate, as JobSettled billed it.
            assert p["billed_ms"] == 1_000 and p["runtime_ms"] == 1_000
            assert info.earned == int(p["pay"]) == -(-int(p["rate_per_hour"]) * 1_000 // 3_600_000)
        assert all(
            s["pay"] is not None
            for s in (await http.get(f"/jobs/{hex_id(job_id)}/explain")).json()["seats"]
        )
        explain = (await http.get(f"/jobs/{hex_id(job_id)}/explain")).json()
        assert sum(c["chosen"] for c in explain["candidates"]) == 2
        assert len(explain["candidates"]) >= 3
        events = (await http.get(f"/jobs/{hex_id(job_id)}/events")).text
        states = [
            json.loads(line[6:])["state"]
            for line in events.splitlines()
            if line.startswith("data: ")
        ]
        assert states[0] == "created" and states[-1] == "settled"
        assert {"matching", "assigned", "committed", "revealing"} <= set(states)
        health = (await http.get("/health")).json()
        assert health["ok"] and health["providers"] >= 3
        metrics = (await http.get("/metrics")).text
        assert 'gpumarket_jobs{state="settled"} 1.0' in metrics


@pytest.mark.timeout(180)
async def test_two_one_split_pays_two_and_slashes_one(market: Market, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        coord = await stack.enter_async_context(
            Coordinator(market.settings(tmp_path, result_retention_s=0), content=market.content)
        )
        assert coord.results is None  # no retention: results are left to the providers
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=coord.http_url, timeout=10)
        )
        await start_providers(stack, market, coord, [b"right", b"right", b"wrong"])
        await wait_ready_book(coord, 3)
        job_id = await market.create_job(redundancy=3)
        await http.post("/jobs", json={"job_id": hex_id(job_id)})
        view = await wait_state(http, hex_id(job_id), {"settled", "failed"})
        assert view["state"] == "settled", view
        outcomes = {p["address"]: p["outcome"] for p in view["providers"]}
        wrong = market.providers[2].address
        assert outcomes[wrong] == "slashed"
        assert sorted(outcomes.values()) == ["paid", "paid", "slashed"]
        client = market.client(market.requester)
        info = await trio.to_thread.run_sync(client.provider_info, wrong)
        assert info.slashed == 1 and info.stake < 100 * 10**6


@pytest.mark.timeout(180)
async def test_silent_provider_is_replaced_and_the_job_still_settles(
    market: Market, tmp_path: Path
) -> None:
    silent = market.providers[0].address
    async with AsyncExitStack() as stack:
        coord = await stack.enter_async_context(
            Coordinator(market.settings(tmp_path), content=market.content)
        )
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=coord.http_url, timeout=10)
        )
        # The silent one is the cheapest, so the matcher picks it first.
        await start_providers(
            stack,
            market,
            coord,
            [b"ok"] * 4,
            **{silent: {"silent": True, "price_per_hour": 500_000}},
        )
        await wait_ready_book(coord, 4)
        job_id = await market.create_job(redundancy=2)
        await http.post("/jobs", json={"job_id": hex_id(job_id)})
        view = await wait_state(http, hex_id(job_id), {"settled", "failed"}, timeout=90)
        assert view["state"] == "settled", view
        by_address = {p["address"]: p for p in view["providers"]}
        assert by_address[silent]["state"] == "replaced"
        assert len(view["providers"]) == 3
        assert sorted(p["outcome"] for p in view["providers"]) == ["paid", "paid", "released"]


@pytest.mark.timeout(180)
async def test_provider_dying_after_its_ack_is_replaced(market: Market, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        settings = market.settings(tmp_path, provider_ttl_s=3.0)
        coord = await stack.enter_async_context(Coordinator(settings, content=market.content))
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=coord.http_url, timeout=10)
        )
        # The victim is cheapest (chosen first) and enters last, so it can leave first.
        others = await start_providers(stack, market, coord, [b"ok"] * 3)
        victim_stack = AsyncExitStack()
        victim = FakeProvider(
            market.providers[3],
            market.domain,
            chain=market.client(market.providers[3]),
            result=b"ok",
            price_per_hour=500_000,
        )
        victim.commit_delay_s = 3600.0  # it never gets to commit
        await victim_stack.enter_async_context(run_provider(victim, coord.multiaddr))
        await wait_ready_book(coord, 4)
        job_id = await market.create_job(redundancy=2)
        await http.post("/jobs", json={"job_id": hex_id(job_id)})
        await wait_for(lambda: _has_assignment(victim), 30)
        await victim_stack.aclose()  # killed: no more adverts, no answers
        view = await wait_state(http, hex_id(job_id), {"settled", "failed"}, timeout=60)
        assert view["state"] == "settled", view
        by_address = {p["address"]: p for p in view["providers"]}
        assert by_address[victim.address]["state"] == "replaced"
        assert sorted(p["outcome"] for p in view["providers"]) == ["paid", "paid", "released"]
        assert others


async def _has_assignment(fake: FakeProvider) -> bool:
    return bool(fake.assignments)


@pytest.mark.timeout(180)
async def test_tie_brings_in_a_tie_breaker_who_decides(market: Market, tmp_path: Path) -> None:
    tie_breaker = market.providers[2].address
    async with AsyncExitStack() as stack:
        coord = await stack.enter_async_context(
            Coordinator(market.settings(tmp_path), content=market.content)
        )
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=coord.http_url, timeout=10)
        )
        # The third is dearest, so it is only chosen as the tie-breaker.
        await start_providers(
            stack, market, coord, [b"a", b"b", b"a"], **{tie_breaker: {"price_per_hour": 3_000_000}}
        )
        await wait_ready_book(coord, 3)
        job_id = await market.create_job(redundancy=2)
        await http.post("/jobs", json={"job_id": hex_id(job_id)})
        view = await wait_state(http, hex_id(job_id), {"settled", "failed"})
        assert view["state"] == "settled", view
        outcomes = {p["address"]: p["outcome"] for p in view["providers"]}
        assert outcomes == {
            market.providers[0].address: "paid",
            market.providers[1].address: "slashed",
            tie_breaker: "paid",
        }
        events = (await http.get(f"/jobs/{hex_id(job_id)}/events")).text
        assert '"state": "disputed"' in events


@pytest.mark.timeout(180)
async def test_jobs_ready_together_settle_in_one_batch(market: Market, tmp_path: Path) -> None:
    settings = market.settings(tmp_path, settle_window_s=3.0)
    async with AsyncExitStack() as stack:
        coord = await stack.enter_async_context(Coordinator(settings, content=market.content))
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=coord.http_url, timeout=10)
        )
        await start_providers(stack, market, coord, [b"x"] * 2)
        await wait_ready_book(coord, 2)
        first = await market.create_job(redundancy=1)
        second = await market.create_job(redundancy=1)
        for job in (first, second):
            assert (await http.post("/jobs", json={"job_id": hex_id(job)})).status_code == 202
        views = [await wait_state(http, hex_id(j), {"settled", "failed"}) for j in (first, second)]
        assert [v["state"] for v in views] == ["settled", "settled"]
        assert views[0]["settle_tx"] == views[1]["settle_tx"]
        assert coord.settler.batches_sent == 1


@pytest.mark.timeout(180)
async def test_lone_newcomer_gets_a_hidden_checker_after_it_commits(
    market: Market, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        coord = await stack.enter_async_context(
            Coordinator(market.settings(tmp_path), content=market.content)
        )
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=coord.http_url, timeout=10)
        )
        fakes = await start_providers(stack, market, coord, [b"same"] * 2)
        await wait_ready_book(coord, 2)
        job_id = await market.create_job(redundancy=1)
        await http.post("/jobs", json={"job_id": hex_id(job_id)})
        view = await wait_state(http, hex_id(job_id), {"settled", "failed"})
        assert view["state"] == "settled", view
        # A provider without a record is always replicated; the checker came second.
        assert [p["outcome"] for p in view["providers"]] == ["paid", "paid"]
        assert all(len(f.assignments) == 1 for f in fakes)
        events = (await http.get(f"/jobs/{hex_id(job_id)}/events")).text
        assert '"spot_check"' in events


@pytest.mark.timeout(240)
async def test_restart_mid_job_finishes_exactly_once(market: Market, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        fakes = [
            await stack.enter_async_context(
                run_provider(
                    FakeProvider(p, market.domain, chain=market.client(p), result=b"same"), None
                )
            )
            for p in market.providers[:2]
        ]
        async with Coordinator(market.settings(tmp_path), content=market.content) as coord:
            for f in fakes:
                assert f.node is not None
                await f.node.connect(coord.multiaddr)
            await wait_ready_book(coord, 2)
            job_id = await market.create_job(redundancy=2)  # noticed by the chain watcher alone

            async def assigned() -> bool:
                return sum(len(f.assignments) for f in fakes) >= 2

            await wait_for(assigned, 60)
        # Stopped after assignment, before any reveal; a new process resumes from the store.
        async with Coordinator(market.settings(tmp_path), content=market.content) as coord2:
            for f in fakes:
                assert f.node is not None
                await f.node.connect(coord2.multiaddr)
            async with httpx.AsyncClient(base_url=coord2.http_url, timeout=10) as http:
                view = await wait_state(http, hex_id(job_id), {"settled", "failed"}, timeout=120)
        assert view["state"] == "settled", view
        client = market.client(market.requester)
        events = await trio.to_thread.run_sync(lambda: client.get_events(0, client.block_number()))
        assert len([e for e in events if e.name == "JobSettled"]) == 1
        assert len([e for e in events if e.name == "ProviderAssigned"]) == 2
