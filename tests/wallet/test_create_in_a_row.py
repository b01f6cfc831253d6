"""Jobs created exactly as the wallet builds them never revert (real Anvil).

A probe saw two of seven ``job submit`` attempts revert and the retries succeed. These tests
create jobs through :meth:`Web3Chain.create_job` with :func:`wallet.jobs.job_request`, in a
row and after the chain has sat idle (its next block then comes much later than its latest).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.chain import Web3Chain
from contracts.models import JobStatus
from devnet.anvil import AnvilNode
from protocol.ids import Address, Cid, to_wei
from protocol.spec_io import load_spec
from tests.contracts.harness import Market, deploy_real, real_market
from wallet.jobs import job_request

pytestmark = pytest.mark.integration
SPEC = load_spec(Path(__file__).resolve().parents[2] / "examples" / "matmul" / "job.yaml")
SPEC_CID = Cid("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")
FEE = to_wei("0.10")


@pytest.fixture(scope="module")
def deployed(anvil: AnvilNode) -> dict[str, str]:
    return deploy_real(anvil.rpc_url, [a.private_key for a in anvil.accounts])


@pytest.fixture
def market(chain: AnvilNode, deployed: dict[str, str]) -> Market:
    """The market with a bonded coordinator, isolated per test by ``chain``."""
    keys = [a.private_key for a in chain.accounts]
    return real_market(chain.rpc_url, chain.chain_id, deployed, keys, chain.rpc)


def _create(market: Market) -> JobStatus:
    requester = market.requester
    assert isinstance(requester, Web3Chain)
    coordinator = Address(market.coordinator.address)
    request = job_request(SPEC, SPEC_CID, coordinator, FEE, requester.next_block_time())
    job_id, _ = requester.create_job(request)
    return requester.get_job(job_id).status


def test_fifty_jobs_in_a_row_none_reverts(market: Market) -> None:
    for _ in range(50):
        assert _create(market) == JobStatus.OPEN


@pytest.mark.parametrize("idle_s", [119, 121, 600, 3601])
def test_a_job_created_after_the_chain_sat_idle_does_not_revert(
    market: Market, idle_s: int
) -> None:
    # No block for idle_s seconds: the latest block's time is that far behind the next one's.
    market.rpc("evm_increaseTime", [idle_s])
    assert _create(market) == JobStatus.OPEN
