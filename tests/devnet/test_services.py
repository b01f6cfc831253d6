"""The environment the devnet gives its provider daemons."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from devnet.anvil import AnvilNode, dev_accounts
from devnet.services import ipfs_env, provider_env
from protocol.devnet_state import DevnetState, IpfsEndpoint, save_state
from wallet.settings import WalletSettings

ROLES = ["deployer", "coordinator", "provider"]


def test_providers_accept_offers_from_the_devnet_coordinator(tmp_path: Path) -> None:
    accounts = [
        a.model_copy(update={"role": r}) for a, r in zip(dev_accounts(3), ROLES, strict=True)
    ]
    state = DevnetState(
        rpc_url="http://127.0.0.1:8545",
        chain_id=31337,
        ipfs_api="http://127.0.0.1:5001",
        accounts=accounts,
        contracts={
            "token": "0x" + "11" * 20,
            "registry": "0x" + "22" * 20,
            "market": "0x" + "22" * 20,
        },
    )
    _, env = provider_env(state, tmp_path, accounts[2], 0, "process")
    assert env["PROVIDER_COORDINATORS"] == accounts[1].address


def _per_node_state() -> DevnetState:
    nodes = {
        name: IpfsEndpoint(
            api=f"http://127.0.0.1:{5000 + i}",
            gateway=f"http://127.0.0.1:{8000 + i}",
            swarm=f"/ip4/127.0.0.1/tcp/{4000 + i}/p2p/{PEER}",
            workdir=f"/tmp/ipfs-{name}",
        )
        for i, name in enumerate(["requester", "coordinator", "provider-0", "provider-1"])
    }
    return DevnetState(ipfs_api=nodes["requester"].api, ipfs_nodes=nodes)


PEER = "12D3KooWBXgounZFNFtGurvVPwy4571yn53QnGw8m7FTUkMpDZUd"


def test_each_participant_gets_its_own_node_and_dials_the_others() -> None:
    state = _per_node_state()
    provider = ipfs_env(state, "provider-1", "PROVIDER_")
    assert provider["PROVIDER_IPFS_API"] == "http://127.0.0.1:5003"
    peers = provider["PROVIDER_IPFS_PEERS"].split(",")
    assert sorted(peers) == sorted(
        n.swarm for name, n in state.ipfs_nodes.items() if name != "provider-1"
    )
    # Inputs are uploaded to the requester's node: providers read them from its gateway.
    assert provider["PROVIDER_IPFS_GATEWAYS"] == "http://127.0.0.1:8000"
    coordinator = ipfs_env(state, "coordinator", "COORDINATOR_")
    assert coordinator["COORDINATOR_IPFS_API"] == "http://127.0.0.1:5001"
    assert "COORDINATOR_IPFS_GATEWAYS" not in coordinator
    # A devnet with one shared node hands that node to everyone.
    shared = DevnetState(ipfs_api="http://127.0.0.1:5999")
    assert ipfs_env(shared, "provider-0", "PROVIDER_") == {
        "PROVIDER_IPFS_API": "http://127.0.0.1:5999"
    }


def test_wallet_on_the_devnet_dials_every_other_node(tmp_path: Path) -> None:
    state = _per_node_state()
    state_file = tmp_path / "state.json"
    save_state(state_file, state)
    settings = WalletSettings(devnet_state=state_file).with_devnet()
    assert settings.ipfs_api == "http://127.0.0.1:5000"
    assert len(settings.ipfs_peers) == 3
    assert state.ipfs_nodes["requester"].swarm not in settings.ipfs_peers


def test_bad_peer_and_gateway_settings_name_the_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}", "/ip4/10.0.0.1/tcp/1"
    monkeypatch.setenv("WALLET_IPFS_PEERS", good)
    assert WalletSettings().ipfs_peers == (good,)
    monkeypatch.setenv("WALLET_IPFS_PEERS", f"{good},{bad}")
    with pytest.raises(ValueError, match=re.escape(f"{bad!r} is not a multiaddr ending in /p2p/")):
        WalletSettings()
    monkeypatch.delenv("WALLET_IPFS_PEERS")
    monkeypatch.setenv("WALLET_IPFS_GATEWAYS", "ftp://example.org")
    with pytest.raises(ValueError, match=re.escape("'ftp://example.org' is not an http")):
        WalletSettings()


@pytest.mark.integration
def test_a_revert_leaves_block_time_at_the_wall_clock(anvil: AnvilNode) -> None:
    """Anvil rolls its clock back with a snapshot; the lag would add up over a session."""

    def block_time() -> int:
        anvil.rpc("evm_mine")
        return int(anvil.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

    snapshot = anvil.snapshot()
    time.sleep(3)
    block_time()
    anvil.revert(snapshot)
    assert block_time() >= int(time.time()) - 1
