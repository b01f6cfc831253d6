"""The chain watcher on a real Anvil whose blocks are replaced below its reorg margin."""

from __future__ import annotations

from pathlib import Path

from contracts import sender as sender_module
from coordinator.chain.chain_io import AsyncChain
from coordinator.chain.watcher import ChainWatcher
from coordinator.signals import Signals
from coordinator.store import AsyncStore, Store
from devnet.anvil import start_anvil
from protocol.lifecycle import JobState
from tests.contracts.harness import FEE, deploy_real, real_market


async def test_a_creation_replaced_by_a_reorg_is_read_again(tmp_path: Path) -> None:
    """Margin 0, as on the devnet: the watcher records a job, then its block is rolled back
    and the requester's next creation takes the same id (its job nonce rolled back too)
    with another fee. The watcher notices the replaced block, reads it again and takes the
    terms now on chain; the coordinator's client forgets the terms it cached."""
    sender_module._STATES.clear()
    node = start_anvil(tmp_path / "anvil")
    try:
        keys = [a.private_key for a in node.accounts]
        m = real_market(node.rpc_url, node.chain_id, deploy_real(node.rpc_url, keys), keys, None)
        store = AsyncStore(Store(f"sqlite:///{tmp_path / 'coordinator.sqlite'}"))
        woken: list[str] = []
        watcher = ChainWatcher(AsyncChain(m.coordinator), store, Signals(), woken.append)
        job_id, first = m.requester.create_job(m.request(2, fee=FEE))
        key = "0x" + bytes(job_id).hex()
        await watcher.poll_once()
        job = await store.find_job(key)
        assert job is not None and job.fee == FEE and job.state is JobState.CREATED
        assert m.coordinator.job_terms(job_id).fee == FEE  # now cached by the client

        node.rpc("anvil_rollback", [1])
        sender_module._STATES.clear()  # the requester's nonce rolled back with the block
        requester = m.requester.for_account(m.accounts["requester"])  # type: ignore[attr-defined]
        again, second = requester.create_job(m.request(2, fee=2 * FEE))
        assert again == job_id and second.block_number == first.block_number
        await watcher.poll_once()
        assert watcher.reorgs == 1
        job = await store.find_job(key)
        assert job is not None and job.fee == 2 * FEE and job.state is JobState.CREATED
        assert m.coordinator.job_terms(job_id).fee == 2 * FEE
        await watcher.poll_once()  # nothing replaced since: no second rewind
        assert watcher.reorgs == 1
    finally:
        node.stop()
        sender_module._STATES.clear()
