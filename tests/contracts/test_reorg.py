"""A reorganisation that removes a job's create, assign or settle before it is confirmed.

On a real Anvil (automine), the market's clients wait for one confirmation. Right after
each transaction is mined, ``anvil_rollback`` removes its block, and with it the
transaction (Anvil does not return it to the pool). The sender notices the receipt is gone,
sends the same signed transaction again, and returns only once it is mined again and
confirmed; the job ends up created, seated and settled exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import sender as sender_module
from contracts.chain import Web3Chain
from contracts.models import JobStatus
from contracts.sender import SendPolicy
from devnet.anvil import AnvilNode, start_anvil
from tests.contracts.harness import GOOD, Market, deploy_real, real_market
from tests.contracts.test_sender import Background, until


@pytest.fixture
def market(tmp_path: Path) -> Iterator[tuple[Market, AnvilNode]]:
    """A market on its own Anvil (rollbacks would confuse the shared node's snapshots)."""
    sender_module._STATES.clear()
    node = start_anvil(tmp_path / "anvil")
    try:
        keys = [a.private_key for a in node.accounts]
        addresses = deploy_real(node.rpc_url, keys)
        m = real_market(node.rpc_url, node.chain_id, addresses, keys, node.rpc)
        for client in (m.requester, m.coordinator):
            assert isinstance(client, Web3Chain)
            client.sender.policy = SendPolicy(confirmations=1, replace_after_s=0.5, poll_s=0.05)
        yield m, node
    finally:
        node.stop()
        sender_module._STATES.clear()


def rolled_back_once(node: AnvilNode, client: Any, action: Callable[[], Any]) -> Any:
    """Run ``action`` (one transaction from ``client``), remove its block as soon as it is
    mined, and return what ``action`` returns once it is re-sent, mined and confirmed."""
    w3 = client.w3
    sent = int(w3.eth.get_transaction_count(client.address))
    job = Background(action)
    until(lambda: w3.eth.get_transaction_count(client.address) == sent + 1, "mined")
    node.rpc("anvil_rollback", [1])
    assert w3.eth.get_transaction_count(client.address) == sent  # gone with its block
    until(lambda: w3.eth.get_transaction_count(client.address) == sent + 1, "mined again")
    assert job.thread.is_alive()  # not confirmed yet: nothing acted on it
    node.rpc("anvil_mine", ["0x1"])
    return job.result()


def test_create_assign_and_settle_survive_a_rollback(market: tuple[Market, AnvilNode]) -> None:
    m, node = market
    request = m.request(2)
    job_id, created = rolled_back_once(node, m.requester, lambda: m.requester.create_job(request))
    assert m.requester.job_status(job_id) == (JobStatus.OPEN, 0)
    assert m.requester.get_job(job_id).created_block == created.block_number

    offers = m.offers(job_id, 0, 1)
    rolled_back_once(node, m.coordinator, lambda: m.coordinator.assign(job_id, offers))
    assert m.requester.job_status(job_id) == (JobStatus.ASSIGNED, 2)
    assert [s.provider for s in m.seats(job_id)] == [p.address for p in m.providers[:2]]

    settlement = m.settlement(job_id, [GOOD, GOOD])
    receipt = rolled_back_once(node, m.coordinator, lambda: m.coordinator.settle(settlement))
    assert [e.name for e in receipt.events].count("JobSettled") == 1
    assert m.requester.job_status(job_id) == (JobStatus.SETTLED, 2)
