"""The environment the devnet gives its provider daemons."""

from __future__ import annotations

from pathlib import Path

from devnet.anvil import dev_accounts
from devnet.services import provider_env
from protocol.devnet_state import DevnetState

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
