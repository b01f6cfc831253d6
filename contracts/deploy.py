"""Deploy the payment token and the job market; fund devnet accounts.

``deploy_all`` deploys TestUSD, then JobMarket(token, min_stake, unbonding_delay,
stake_factor). The provider registry is part of the market contract (one token balance
holds escrows, stakes and credits), so the returned ``"registry"`` and ``"market"``
addresses are the same: ``{"token", "registry", "market"}``.
"""

from __future__ import annotations

from collections.abc import Iterable

from eth_account import Account
from eth_utils import to_checksum_address
from web3 import Web3

from contracts.abi import load_artifact
from contracts.errors import RpcError
from contracts.sender import TxSender
from protocol.ids import Address, parse_address, to_wei

DEFAULT_UNBONDING_DELAY_S = 24 * 3600
DEFAULT_MIN_STAKE = to_wei("50")
DEFAULT_STAKE_FACTOR = 5
RPC_TIMEOUT_S = 30


def connect(rpc_url: str) -> Web3:
    """An HTTP web3 client with a bounded request timeout."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": RPC_TIMEOUT_S}))
    try:
        _ = w3.eth.chain_id
    except Exception as exc:
        raise RpcError(f"cannot reach the node at {rpc_url}: {exc}") from exc
    return w3


def deploy_contract(sender: TxSender, name: str, *args: object) -> Address:
    """Deploy one artifact with constructor ``args``; return its address."""
    artifact = load_artifact(name)
    factory = sender.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = factory.constructor(*args).data_in_transaction
    receipt = sender.send({"data": data})
    address = receipt["contractAddress"]
    if address is None:
        raise RpcError(f"deploying {name} returned no contract address")
    return parse_address(address)


def deploy_all(
    rpc_url: str,
    deployer_private_key: str,
    *,
    unbonding_delay: int = DEFAULT_UNBONDING_DELAY_S,
    min_stake: int = DEFAULT_MIN_STAKE,
    stake_factor: int = DEFAULT_STAKE_FACTOR,
) -> dict[str, str]:
    """Deploy the three contracts from ``deployer_private_key``; the deployer can mint."""
    w3 = connect(rpc_url)
    sender = TxSender(w3, Account.from_key(deployer_private_key), w3.eth.chain_id)
    token = deploy_contract(sender, "TestUSD")
    market = deploy_contract(sender, "JobMarket", token, min_stake, unbonding_delay, stake_factor)
    return {"token": token, "registry": market, "market": market}


def fund_accounts(
    rpc_url: str,
    deployer_key: str,
    token_address: str,
    addresses: Iterable[str],
    amount: int,
) -> None:
    """Mint ``amount`` token units to each address (only the token's deployer may mint)."""
    w3 = connect(rpc_url)
    sender = TxSender(w3, Account.from_key(deployer_key), w3.eth.chain_id)
    token = w3.eth.contract(
        address=to_checksum_address(token_address), abi=load_artifact("TestUSD").abi
    )
    for address in addresses:
        sender.send(token.functions.mint(parse_address(address), amount))
