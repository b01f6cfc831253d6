"""A job every provider failed tells the requester what each provider reported."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from coordinator.lifecycle.driver import every_provider_failed
from coordinator.service import Coordinator
from coordinator.store import ProviderSlot
from devnet.anvil import AnvilNode
from devnet.scripted_provider import FakeProvider, run_provider
from protocol.ids import Address, Wei
from protocol.lifecycle import SeatState
from protocol.messages import FailureKind
from tests.coordinator.market import Market, deploy_market
from tests.coordinator.test_service_devnet import hex_id, wait_ready_book, wait_state

pytestmark = pytest.mark.integration

SYMLINK = "symlink leak points outside outputs"
HASH = "input data: hash function sha3-256 is not sha2-256"


@pytest.fixture
def market(chain: AnvilNode) -> Market:
    return deploy_market(chain, providers=2)


@pytest.mark.timeout(120)
async def test_the_failure_reason_names_every_provider_and_what_it_reported(
    market: Market, tmp_path: Path
) -> None:
    failures = [(FailureKind.OUTPUT_REFUSED, SYMLINK), (FailureKind.BAD_INPUT, HASH)]
    async with AsyncExitStack() as stack:
        coord = await stack.enter_async_context(
            Coordinator(market.settings(tmp_path), content=market.content)
        )
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=coord.http_url, timeout=10)
        )
        for identity, failure in zip(market.providers, failures, strict=True):
            fake = FakeProvider(
                identity, market.domain, chain=market.client(identity), fail_with=failure
            )
            await stack.enter_async_context(run_provider(fake, coord.multiaddr))
        await wait_ready_book(coord, 2)
        job_id = hex_id(await market.create_job(redundancy=2))
        response = await http.post("/jobs", json={"job_id": job_id})
        assert response.status_code == 202, response.text
        view = await wait_state(http, job_id, {"settled", "failed"})
    assert view["state"] == "failed", view
    reason = view["failure"]["reason"]
    assert reason.startswith("every provider failed: "), reason
    for identity, (kind, detail) in zip(market.providers, failures, strict=True):
        assert f"{identity.address}: " in reason and f"{kind}: {detail}" in reason, reason
        entry = next(p for p in view["providers"] if p["address"] == identity.address)
        assert entry["state"] == "failed" and detail in entry["detail"], entry


def test_without_details_the_reason_still_says_what_happened() -> None:
    quiet = ProviderSlot(
        job_id="0x" + "0" * 64,
        idx=0,
        address=Address("0x" + "1" * 40),
        peer_id="p",
        price=Wei(1),
        state=SeatState.FAILED,
        updated_at=0.0,
    )
    assert every_provider_failed([quiet]) == "every provider failed and none can replace them"
