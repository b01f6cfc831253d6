"""A coordinator short of gas money takes no new job until it is topped up (real Anvil)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from coordinator.service import Coordinator
from devnet.anvil import AnvilNode
from tests.coordinator.market import Market, deploy_market
from tests.coordinator.test_service_devnet import (
    hex_id,
    job_state,
    start_providers,
    wait_for,
    wait_ready_book,
    wait_state,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def market(chain: AnvilNode) -> Market:
    return deploy_market(chain, providers=3)


@pytest.mark.timeout(180)
async def test_a_job_waits_while_the_coordinator_cannot_pay_gas(
    market: Market, tmp_path: Path
) -> None:
    rpc, coordinator = market.anvil.rpc, market.coordinator.address
    plenty = rpc("eth_getBalance", [coordinator, "latest"])
    async with AsyncExitStack() as stack:
        coord = await stack.enter_async_context(
            Coordinator(market.settings(tmp_path), content=market.content)
        )
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=coord.http_url, timeout=10)
        )
        await start_providers(stack, market, coord, [b"same"] * 3)
        await wait_ready_book(coord, 3)
        rpc("anvil_setBalance", [coordinator, hex(10**12)])  # far from one assign's gas
        job_id = await market.create_job(redundancy=2)
        key = hex_id(job_id)
        assert (await http.post("/jobs", json={"job_id": key})).status_code == 202

        async def told() -> bool:
            job = await coord.store.find_job(key)
            return job is not None and "waiting for gas money" in (job.waiting or "")

        await wait_for(told, 30, "the job waiting for gas money")
        job = await coord.store.find_job(key)
        assert job is not None and coordinator in (job.waiting or "")
        assert (await job_state(http, key))["state"] in ("created", "matching")
        rpc("anvil_setBalance", [coordinator, plenty])
        view = await wait_state(http, key, {"settled", "failed"})
        assert view["state"] == "settled", view
