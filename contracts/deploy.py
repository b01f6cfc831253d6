"""Deploy the payment token and the job market; fund devnet accounts.

``deploy_all`` deploys TestUSD (unless an existing token is given), then
``JobMarket(token, minStake, unbondingDelay, stakeFactor, minPrice, minCoordinatorBond,
coordinatorUnbondDelay)``. The provider registry is part of the market contract (one token
balance holds escrows, stakes, bonds and credits), so the returned ``"registry"`` and
``"market"`` addresses are the same: ``{"token", "registry", "market"}``.
"""

from __future__ import annotations

from collections.abc import Iterable

from eth_abi import decode, encode
from eth_account import Account
from eth_typing import HexStr
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from contracts.abi import load_artifact
from contracts.errors import RpcError
from contracts.sender import TxSender
from protocol.eip712 import TOKEN_DOMAIN_VERSION
from protocol.errors import ChainError
from protocol.ids import TOKEN_DECIMALS, Address, parse_address, to_wei

DEFAULT_UNBONDING_DELAY_S = 24 * 3600
DEFAULT_MIN_STAKE = to_wei("50")
DEFAULT_STAKE_FACTOR = 5
DEFAULT_MIN_PRICE = 1_000  # 0.001 token
DEFAULT_MIN_COORDINATOR_BOND = to_wei("100")
DEFAULT_COORDINATOR_UNBOND_DELAY_S = 91 * 24 * 3600  # longer than the longest job (90 days)
RPC_TIMEOUT_S = 30


class TokenUnsuitable(ChainError):
    """The token given to ``deploy_all`` is not a 6-decimal ERC-20 with EIP-2612 permits."""


class WrongChainId(ChainError):
    """The node serves another chain than the one the settings or the profile name."""

    def __init__(self, rpc_url: str, served: int, expected: int, network: str | None) -> None:
        self.served = served
        self.expected = expected
        named = f"network {network!r} expects" if network else "the settings expect"
        super().__init__(
            f"the node at {rpc_url} serves chain id {served} but {named} chain id "
            f"{expected}; nothing was sent. Point the RPC URL at the right chain or fix the "
            "chain id"
        )


def connect(rpc_url: str, chain_id: int | None = None, *, network: str | None = None) -> Web3:
    """An HTTP web3 client with a bounded request timeout; with ``chain_id``, the node must
    serve that chain (:class:`WrongChainId` otherwise; ``network`` names the profile)."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": RPC_TIMEOUT_S}))
    try:
        served = int(w3.eth.chain_id)
    except Exception as exc:
        raise RpcError(f"cannot reach the node at {rpc_url}: {exc}") from exc
    if chain_id is not None and served != chain_id:
        raise WrongChainId(rpc_url, served, chain_id, network)
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


def token_domain_separator(
    chain_id: int, token: str, name: str, version: str = TOKEN_DOMAIN_VERSION
) -> bytes:
    """The EIP-712 domain separator of an EIP-2612 token named ``name`` (version "1", which
    the permits this package signs assume, unless another is given)."""
    typehash = keccak(
        text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    fields = [typehash, keccak(text=name), keccak(text=version), chain_id, token]
    return keccak(encode(["bytes32", "bytes32", "bytes32", "uint256", "address"], fields))


def check_token(w3: Web3, token: str) -> None:
    """Raise :class:`TokenUnsuitable` unless ``token`` answers ``decimals() == 6`` and the
    EIP-2612 views ``nonces(address)`` and ``DOMAIN_SEPARATOR()``, and that separator is
    the EIP-712 domain of the token's ``name()`` and version (its ``version()``, else "1"
    or "2") on this chain at this address: permits signed for it can verify."""
    address = parse_address(token)
    if not w3.eth.get_code(to_checksum_address(address)):
        raise TokenUnsuitable(f"token {address} has no code: is it deployed on this chain?")

    def call(signature: str, args: bytes = b"") -> bytes:
        data = keccak(text=signature)[:4] + args
        try:
            out = w3.eth.call(
                {"to": to_checksum_address(address), "data": HexStr("0x" + data.hex())}
            )
        except Exception as exc:
            raise TokenUnsuitable(f"token {address} does not answer {signature}: {exc}") from exc
        return bytes(out)

    def view(signature: str, args: bytes = b"") -> bytes:
        out = call(signature, args)
        if len(out) != 32:
            raise TokenUnsuitable(f"token {address} answered {signature} with {len(out)} bytes")
        return out

    def text(signature: str) -> str | None:
        try:
            return str(decode(["string"], call(signature))[0])
        except Exception:
            return None

    decimals = int.from_bytes(view("decimals()"), "big")
    if decimals != TOKEN_DECIMALS:
        raise TokenUnsuitable(
            f"token {address} has {decimals} decimals; the market needs a {TOKEN_DECIMALS}-"
            "decimal token (amounts are base units of a USD-like stablecoin)"
        )
    separator = b""
    for signature, args in (("nonces(address)", bytes(32)), ("DOMAIN_SEPARATOR()", b"")):
        try:
            separator = view(signature, args)
        except TokenUnsuitable as exc:
            raise TokenUnsuitable(f"{exc}; the market needs EIP-2612 permits") from exc
    name = text("name()")
    if name is None:
        raise TokenUnsuitable(f"token {address} does not answer name() with a string")
    chain_id = int(w3.eth.chain_id)
    versions = [v for v in (text("version()"), TOKEN_DOMAIN_VERSION, "2") if v is not None]
    if not any(separator == token_domain_separator(chain_id, address, name, v) for v in versions):
        raise TokenUnsuitable(
            f"token {address} ({name!r}) has a DOMAIN_SEPARATOR that is not its EIP-712 "
            f"domain on chain {chain_id} (name, version {' or '.join(map(repr, versions))}, "
            "this chain, this address): EIP-2612 permits signed for it would not verify"
        )


def deploy_all(
    rpc_url: str,
    deployer_private_key: str,
    *,
    unbonding_delay: int = DEFAULT_UNBONDING_DELAY_S,
    min_stake: int = DEFAULT_MIN_STAKE,
    stake_factor: int = DEFAULT_STAKE_FACTOR,
    min_price: int = DEFAULT_MIN_PRICE,
    min_coordinator_bond: int = DEFAULT_MIN_COORDINATOR_BOND,
    coordinator_unbond_delay: int = DEFAULT_COORDINATOR_UNBOND_DELAY_S,
    token: str | None = None,
) -> dict[str, str]:
    """Deploy the market (and TestUSD, whose deployer can mint, unless ``token`` names an
    existing 6-decimal EIP-2612 token); returns ``{"token", "registry", "market"}``.

    A bad parameter is refused by the market's constructor as
    ``InvalidConstructorArgument(name)``; an unsuitable ``token`` as :class:`TokenUnsuitable`.
    """
    w3 = connect(rpc_url)
    sender = TxSender(w3, Account.from_key(deployer_private_key), w3.eth.chain_id)
    if token is None:
        token = deploy_contract(sender, "TestUSD")
    else:
        check_token(w3, token)
        token = parse_address(token)
    market = deploy_contract(
        sender,
        "JobMarket",
        token,
        min_stake,
        unbonding_delay,
        stake_factor,
        min_price,
        min_coordinator_bond,
        coordinator_unbond_delay,
    )
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
