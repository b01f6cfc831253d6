"""`gpumarket contracts deploy` against a real Anvil: with a fresh TestUSD or a given token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from typer.testing import CliRunner

from contracts.abi import load_artifact
from contracts.deploy import connect, deploy_contract
from contracts.sender import TxSender
from devnet.anvil import AnvilNode
from gpumarket_cli import app

pytestmark = pytest.mark.integration


def key_file(tmp_path: Path, chain: AnvilNode) -> Path:
    path = tmp_path / "deployer.key"
    path.write_text(chain.accounts[0].private_key + "\n")
    return path


def market_token(chain: AnvilNode, market: str) -> str:
    w3 = connect(chain.rpc_url)
    contract = w3.eth.contract(
        address=w3.to_checksum_address(market), abi=load_artifact("JobMarket").abi
    )
    return str(contract.functions.token().call())


def test_deploy_uses_the_token_it_is_given(tmp_path: Path, chain: AnvilNode) -> None:
    w3 = connect(chain.rpc_url)
    sender = TxSender(w3, Account.from_key(chain.accounts[0].private_key), chain.chain_id)
    token = deploy_contract(sender, "TestUSD")
    result = CliRunner().invoke(
        app,
        [
            "contracts",
            "deploy",
            "--rpc-url",
            chain.rpc_url,
            "--key-file",
            str(key_file(tmp_path, chain)),
            "--token",
            token,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    addresses = json.loads(result.stdout)
    assert addresses["token"] == token
    assert market_token(chain, addresses["market"]) == token


def test_deploy_without_a_token_deploys_testusd(tmp_path: Path, chain: AnvilNode) -> None:
    args = ["contracts", "deploy", "--rpc-url", chain.rpc_url, "--json"]
    result = CliRunner().invoke(app, [*args, "--key-file", str(key_file(tmp_path, chain))])
    assert result.exit_code == 0, result.output
    addresses = json.loads(result.stdout)
    assert market_token(chain, addresses["market"]) == addresses["token"]


def test_a_bad_key_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    result = CliRunner().invoke(
        app, ["contracts", "deploy", "--rpc-url", "http://127.0.0.1:9", "--key-file", str(bad)]
    )
    assert result.exit_code == 1
    assert "error: private key is not valid hex" in result.output
