"""`gpumarket contracts deploy --token` refuses tokens the market cannot use, on a real Anvil.

The refused tokens are tiny contracts assembled here that answer a fixed set of calls with
fixed bytes (and revert on anything else): an 18-decimal token, a 6-decimal token without
EIP-2612 views, and one whose DOMAIN_SEPARATOR is not its EIP-712 domain. A token with a
version-"2" domain (as USDC has) passes, like TestUSD.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak
from typer.testing import CliRunner
from web3.utils.address import get_create_address

from contracts.deploy import TokenUnsuitable, check_token, connect, token_domain_separator
from contracts.sender import TxSender
from devnet.anvil import AnvilNode
from gpumarket_cli import app

pytestmark = pytest.mark.integration


def word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def string(value: str) -> bytes:
    return encode(["string"], [value])


def stub_code(answers: dict[str, bytes]) -> bytes:
    """Creation code of a contract answering ``signature -> bytes`` (32-byte multiples)."""
    dispatch = bytes.fromhex("60003560e01c")  # selector = calldata[0:4]
    blocks = []
    for data in answers.values():
        body = b"\x5b"  # JUMPDEST
        for i in range(0, len(data), 32):
            body += b"\x7f" + data[i : i + 32] + b"\x61" + i.to_bytes(2, "big") + b"\x52"
        body += b"\x61" + len(data).to_bytes(2, "big") + bytes.fromhex("6000f3")
        blocks.append(body)
    head = len(dispatch) + 11 * len(answers) + 4
    runtime = dispatch
    offset = head
    for signature, body in zip(answers, blocks, strict=True):
        runtime += b"\x80\x63" + keccak(text=signature)[:4] + b"\x14"  # DUP1 PUSH4 EQ
        runtime += b"\x61" + offset.to_bytes(2, "big") + b"\x57"  # PUSH2 dest JUMPI
        offset += len(body)
    runtime += bytes.fromhex("600080fd") + b"".join(blocks)  # no match: revert
    size = len(runtime).to_bytes(2, "big")
    init = (
        b"\x61"
        + size
        + b"\x80\x61"
        + (13).to_bytes(2, "big")
        + bytes.fromhex("60003960 00f3".replace(" ", ""))
    )
    return init + runtime


def deploy_stub(chain: AnvilNode, answers: dict[str, bytes]) -> str:
    w3 = connect(chain.rpc_url)
    sender = TxSender(w3, Account.from_key(chain.accounts[0].private_key), chain.chain_id)
    receipt = sender.send({"data": "0x" + stub_code(answers).hex()})
    return str(receipt["contractAddress"])


def deploy_cli(tmp_path: Path, chain: AnvilNode, token: str) -> tuple[int, str]:
    key = tmp_path / "deployer.key"
    key.write_text(chain.accounts[0].private_key + "\n")
    args = ["contracts", "deploy", "--rpc-url", chain.rpc_url, "--key-file", str(key)]
    done = CliRunner().invoke(app, [*args, "--token", token])
    return done.exit_code, " ".join(done.output.split())


def test_an_18_decimal_token_is_refused(tmp_path: Path, chain: AnvilNode) -> None:
    token = deploy_stub(chain, {"decimals()": word(18)})
    code, output = deploy_cli(tmp_path, chain, token)
    assert code == 1
    assert "has 18 decimals; the market needs a 6-decimal token" in output


def test_a_token_without_permit_is_refused(tmp_path: Path, chain: AnvilNode) -> None:
    token = deploy_stub(chain, {"decimals()": word(6), "name()": string("Plain")})
    code, output = deploy_cli(tmp_path, chain, token)
    assert code == 1
    assert "does not answer nonces(address)" in output
    assert "the market needs EIP-2612 permits" in output


def test_a_foreign_domain_separator_is_refused(chain: AnvilNode) -> None:
    token = deploy_stub(
        chain,
        {
            "decimals()": word(6),
            "name()": string("Copy"),
            "nonces(address)": word(0),
            "DOMAIN_SEPARATOR()": token_domain_separator(1, "0x" + "00" * 20, "Copy"),
        },
    )
    with pytest.raises(TokenUnsuitable, match="not its EIP-712 domain on chain 31337"):
        check_token(connect(chain.rpc_url), token)


def test_a_version_2_permit_token_passes(chain: AnvilNode) -> None:
    w3 = connect(chain.rpc_url)
    # its address is known before it exists: the deployer's next contract
    deployer = w3.to_checksum_address(chain.accounts[0].address)
    address = get_create_address(deployer, w3.eth.get_transaction_count(deployer, "pending"))
    token = deploy_stub(
        chain,
        {
            "decimals()": word(6),
            "name()": string("USD Coin"),
            "version()": string("2"),
            "nonces(address)": word(0),
            "DOMAIN_SEPARATOR()": token_domain_separator(31337, address, "USD Coin", "2"),
        },
    )
    assert token.lower() == address.lower()
    check_token(w3, token)
