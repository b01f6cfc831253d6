"""More concurrent jobs than job slots: every job waits its turn and settles.

Three providers that run one job at a time (and refuse more as busy, as the real provider
does) take four redundancy-2 jobs submitted at once. No provider may count as failed.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import trio

from coordinator.service import Coordinator
from devnet.anvil import AnvilNode
from devnet.scripted_provider import FakeProvider, run_provider
from tests.coordinator.market import Market, deploy_market
from tests.coordinator.test_service_devnet import hex_id, wait_ready_book, wait_state

pytestmark = pytest.mark.integration

JOBS = 4


@pytest.fixture
def market(chain: AnvilNode) -> Market:
    return deploy_market(chain, providers=3)


@pytest.mark.timeout(240)
async def test_jobs_beyond_capacity_wait_in_created_and_all_settle(
    market: Market, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        coord = await stack.enter_async_context(
            Coordinator(market.settings(tmp_path), content=market.content)
        )
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=coord.http_url, timeout=10)
        )
        providers = []
        for identity in market.providers:
            fake = FakeProvider(
                identity, market.domain, chain=market.client(identity), result=b"same", max_jobs=1
            )
            fake.commit_delay_s = 1.0
            providers.append(await stack.enter_async_context(run_provider(fake, coord.multiaddr)))
        await wait_ready_book(coord, 3)
        job_ids = [hex_id(await market.create_job(redundancy=2)) for _ in range(JOBS)]
        for job_id in job_ids:
            response = await http.post("/jobs", json={"job_id": job_id})
            assert response.status_code == 202, response.text
        views = []
        for job_id in job_ids:
            views.append(await wait_state(http, job_id, {"settled", "failed"}, timeout=180))
        for view in views:
            assert view["state"] == "settled", view
            states = [p["state"] for p in view["providers"]]
            assert "failed" not in states and "replaced" not in states, view
            assert sum(p["outcome"] == "paid" for p in view["providers"]) == 2, view
        # Never more than one job at a time at any provider.
        assert all(len(p.running) == 0 for p in providers)
        assert sum(len(p.assignments) for p in providers) == 2 * JOBS
        with trio.fail_after(5):
            assert not coord.assigner.waiting()
