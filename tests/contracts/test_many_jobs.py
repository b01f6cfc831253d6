"""Twenty jobs through the market on a chain that mines on a clock, with fees that climb
and transactions that go missing.

Anvil mines a block every 0.3 s. A pricing thread keeps pushing the next block's base fee
up (by a quarter each time, to 40 gwei), so transactions priced a moment earlier fall
below it and must be replaced with higher fees; a chaos thread drops the first few of the
coordinator's transactions it sees in the pool. Four requesters create 20 jobs, the
coordinator (one account, four threads) seats two providers on each and settles it. Every
job settles; each account's nonces were mined exactly once each, in order, and nothing of
theirs is left pending.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from contracts import sender as sender_module
from contracts.chain import Web3Chain
from contracts.fees import GWEI
from contracts.models import JobStatus
from contracts.sender import SendPolicy
from devnet.anvil import AnvilNode, start_anvil
from protocol.ids import JobId
from tests.contracts.harness import FUNDS, GOOD, Market, deploy_real, real_market
from tests.contracts.test_sender import Background, mined_nonces, pooled

JOBS = 20
WORKERS = 4
pytestmark = pytest.mark.integration


@pytest.fixture
def busy_market(tmp_path: Path) -> Iterator[tuple[Market, AnvilNode, list[Web3Chain]]]:
    sender_module._STATES.clear()
    node = start_anvil(tmp_path / "anvil", block_time=0.3)
    try:
        keys = [a.private_key for a in node.accounts]
        m = real_market(node.rpc_url, node.chain_id, deploy_real(node.rpc_url, keys), keys, None)
        deployer, coordinator = m.deployer, m.coordinator
        assert isinstance(m.requester, Web3Chain) and isinstance(deployer, Web3Chain)
        assert isinstance(coordinator, Web3Chain)
        requesters: list[Web3Chain] = [m.requester, deployer]
        deployer.mint(deployer.address, FUNDS)
        for spare in keys[8:10]:
            client = deployer.for_account(Account.from_key(spare))
            deployer.mint(client.address, FUNDS)
            requesters.append(client)
        policy = SendPolicy(replace_after_s=1.5, poll_s=0.1, receipt_timeout_s=120)
        for each in [*requesters, coordinator]:
            each.sender.policy = policy
        yield m, node, requesters
    finally:
        node.stop()
        sender_module._STATES.clear()


def test_twenty_jobs_settle_under_rising_fees_and_drops(
    busy_market: tuple[Market, AnvilNode, list[Web3Chain]],
) -> None:
    m, node, requesters = busy_market
    coordinator = m.coordinator
    assert isinstance(coordinator, Web3Chain)
    w3 = coordinator.w3
    accounts = [w3.to_checksum_address(c.address) for c in [*requesters, coordinator]]
    nonces_before = {a: w3.eth.get_transaction_count(a) for a in accounts}
    first_block = w3.eth.block_number + 1  # the set-up is mined by now
    stop = threading.Event()
    dropped: list[str] = []
    raised: list[int] = []

    def pricing() -> None:
        fee = GWEI
        while not stop.is_set():
            fee = min(fee * 5 // 4, 40 * GWEI)
            node.rpc("anvil_setNextBlockBaseFeePerGas", [hex(fee)])
            raised.append(fee)
            time.sleep(0.4)

    def chaos() -> None:
        while len(dropped) < 3 and not stop.is_set():
            for entry in pooled(node, coordinator.address).values():
                if entry["hash"] not in dropped:
                    node.rpc("anvil_dropTransaction", [entry["hash"]])
                    dropped.append(entry["hash"])
                    break
            time.sleep(0.05)

    def jobs(worker: int) -> list[JobId]:
        requester = requesters[worker]
        pair = (0, 1) if worker % 2 == 0 else (2, 3)
        done = []
        for _ in range(JOBS // WORKERS):
            job_id, _ = requester.create_job(m.request(2))
            coordinator.assign(job_id, m.offers(job_id, *pair))
            coordinator.settle(m.settlement(job_id, [GOOD, GOOD]))
            done.append(job_id)
        return done

    helpers = [threading.Thread(target=f, daemon=True) for f in (pricing, chaos)]
    for helper in helpers:
        helper.start()
    try:
        workers = [Background(lambda w=w: jobs(w)) for w in range(WORKERS)]  # type: ignore[misc]
        settled: list[Any] = [j for w in workers for j in w.result()]
    finally:
        stop.set()
        for helper in helpers:
            helper.join(5)
    assert len(settled) == JOBS
    assert all(coordinator.job_status(j) == (JobStatus.SETTLED, 2) for j in settled)
    assert dropped, "the chaos thread never saw a transaction to drop"
    last = w3.eth.block_number
    peak = max(int(w3.eth.get_block(n)["baseFeePerGas"]) for n in range(first_block, last + 1))
    assert peak >= 10 * GWEI  # fees did climb while the jobs ran
    for address in accounts:
        start, now = nonces_before[address], w3.eth.get_transaction_count(address)
        assert sorted(mined_nonces(w3, address, first_block, last)) == list(range(start, now))
        assert w3.eth.get_transaction_count(address, "pending") == now
        assert pooled(node, address) == {}
    assert w3.eth.get_transaction_count(accounts[-1]) - nonces_before[accounts[-1]] == 2 * JOBS
