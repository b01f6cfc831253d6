"""Restarting one participant's IPFS node of a devnet (``devnet.network.restart_ipfs_node``):
the node comes back with its repo, identity and ports, the state file records the new
process (so ``devnet down`` stops it), and peers reach it again where it was."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import pytest

from devnet import network
from devnet.ipfs import start_nodes
from devnet.process import is_alive
from protocol.devnet_state import DevnetState, IpfsEndpoint, load_state, save_state
from protocol.errors import DevnetError
from protocol.ipfs import KuboContentStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _peer_id(api_url: str) -> str:
    return str(httpx.post(f"{api_url}/api/v0/id", timeout=5.0).json()["ID"])


async def test_a_restarted_node_is_recorded_and_found_where_it_was(tmp_path: Path) -> None:
    nodes = start_nodes(tmp_path / "ipfs", ["requester", "provider-0"])
    state_file = tmp_path / "state.json"
    state = DevnetState(
        ipfs_api=nodes["requester"].api_url,
        ipfs_nodes={
            name: IpfsEndpoint(
                api=n.api_url,
                gateway=n.gateway_url,
                swarm=n.swarm_addr,
                workdir=str(n.repo.parent),
            )
            for name, n in nodes.items()
        },
        processes=[n.process for n in nodes.values()],
    )
    save_state(state_file, state)
    try:
        requester = nodes["requester"]
        data = hashlib.shake_256(b"restart").digest(700_000)
        async with KuboContentStore(requester.api_url) as store:
            cid = await store.add_bytes(data)
        before = requester.process.pid
        identity = _peer_id(requester.api_url)

        restarted = network.restart_ipfs_node(state_file, "requester")

        assert restarted.pid != before and not is_alive(before) and is_alive(restarted.pid)
        recorded = [p.pid for p in load_state(state_file).processes]
        assert recorded == [restarted.pid, nodes["provider-0"].process.pid]
        assert _peer_id(requester.api_url) == identity  # same repo, same ports
        # A provider's store redials the node at its old address and reads its gateway.
        async with KuboContentStore(
            nodes["provider-0"].api_url,
            timeout=30,
            peers=[requester.swarm_addr],
            gateways=[requester.gateway_url],
        ) as store:
            assert await store.connect_peers() == {}
            assert await store.read_bytes(cid) == data
        with pytest.raises(DevnetError, match=r"no IPFS node 'provider-9'.*requester, provider-0"):
            network.restart_ipfs_node(state_file, "provider-9")
    finally:
        network.down(state_file)
    assert not is_alive(restarted.pid)  # `down` stopped the new process too


async def test_a_transfer_cut_off_mid_file_leaves_the_fetching_node_running(
    tmp_path: Path,
) -> None:
    """js-ipfs's CLI exits on any unhandled rejection, and a ``cat`` ended while its
    bitswap wants are pending (its own timeout, or the client going away) leaves some:
    without the devnet's guard, the node that was fetching died with the transfer."""
    nodes = start_nodes(tmp_path / "ipfs", ["serving", "fetching"])
    serving, fetching = nodes["serving"], nodes["fetching"]
    try:
        data = hashlib.shake_256(b"cut off").digest(8 << 20)
        async with KuboContentStore(serving.api_url) as store:
            cid = await store.add_bytes(data)
        # The fetching node learns the file's root, then its only source goes away.
        root = httpx.post(f"{fetching.api_url}/api/v0/block/get", params={"arg": cid}, timeout=30)
        assert root.status_code == 200
        serving.stop()
        cut = httpx.post(
            f"{fetching.api_url}/api/v0/cat", params={"arg": cid, "timeout": "2s"}, timeout=30
        )
        assert cut.status_code == 500 or len(cut.content) < len(data)
        time.sleep(1.0)
        assert _peer_id(fetching.api_url)  # still answering
    finally:
        for node in nodes.values():
            node.stop()
