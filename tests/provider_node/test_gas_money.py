"""A provider without gas money is told so before any transaction is sent, on a real Anvil."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.chain import Web3Chain
from contracts.errors import InsufficientGasMoney
from protocol.ids import to_wei
from provider_node import staking
from tests.contracts.harness import Market

pytestmark = pytest.mark.integration


def test_staking_actions_are_refused_before_sending_without_gas_money(
    real: Market, chain: Any
) -> None:
    provider = real.providers[0]
    assert isinstance(provider, Web3Chain)
    address = provider.address
    chain.rpc("anvil_setBalance", [address, hex(10**9)])  # one gwei: no transaction fits
    nonce = provider.w3.eth.get_transaction_count(provider.w3.to_checksum_address(address))
    for action in (
        lambda: staking.unbond(provider, to_wei("1")),
        lambda: staking.withdraw(provider),
        lambda: staking.register(provider),
    ):
        with pytest.raises(InsufficientGasMoney, match="nothing was sent"):
            action()
    assert provider.w3.eth.get_transaction_count(provider.w3.to_checksum_address(address)) == nonce
    warning = staking.fallback_gas_warning(provider, 2)
    assert warning is not None and address in warning
    chain.rpc("anvil_setBalance", [address, hex(10**18)])
    assert staking.fallback_gas_warning(provider, 2) is None
    assert staking.unbond(provider, to_wei("1")).gas_used <= staking.GAS_BOUNDS["unbond"]
