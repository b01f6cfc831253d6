"""Gas money: an action the account cannot pay gas for is refused before anything happens."""

from __future__ import annotations

import pytest
from eth_account import Account

from contracts.deploy import connect, fund_accounts
from contracts.errors import InsufficientGasMoney
from contracts.sender import TxSender
from devnet.anvil import AnvilNode
from protocol.identity import Identity
from protocol.ids import to_wei
from tests.wallet.test_submit import EXAMPLES, coordinator_url, market  # noqa: F401
from wallet import jobs
from wallet.settings import WalletSettings


def test_a_job_is_refused_before_upload_without_gas_money(
    chain: AnvilNode,
    market: WalletSettings,  # noqa: F811
) -> None:
    """Tokens for the escrow but no ETH: the wallet says so before uploading anything."""
    broke = Identity.from_private_key(bytes(Account.create().key))
    fund_accounts(
        chain.rpc_url,
        chain.accounts[0].private_key,
        market.need("token_address"),
        [broke.address],
        to_wei("1000"),
    )
    # the coordinator is down too: the gas check comes first, before any upload or call
    down = market.model_copy(update={"coordinator_url": "http://127.0.0.1:9"})
    with pytest.raises(InsufficientGasMoney, match=rf"account {broke.address} has 0.000000 ETH"):
        jobs.submit(down, broke, EXAMPLES / "matmul" / "job.yaml")


def test_a_transaction_refused_for_gas_names_what_is_missing(chain: AnvilNode) -> None:
    w3 = connect(chain.rpc_url)
    poor = Account.create()
    chain.rpc("anvil_setBalance", [poor.address, hex(10**12)])
    sender = TxSender(w3, poor, chain.chain_id)
    short = sender.gas_shortfall(21_000)
    assert short is not None and short.balance_wei == 10**12
    with pytest.raises(InsufficientGasMoney, match="nothing was sent") as caught:
        sender.send({"to": chain.accounts[1].address, "value": 1, "gas": 21_000})
    assert caught.value.balance_wei == 10**12 and caught.value.needed_wei > 10**12
    assert sender.gas_shortfall(21_000) is not None
    chain.rpc("anvil_setBalance", [poor.address, hex(10**18)])
    assert sender.gas_shortfall(21_000) is None
    assert sender.send({"to": chain.accounts[1].address, "value": 1, "gas": 21_000})["status"] == 1
