"""Fixtures for the contract tests: a market on the in-memory fake and on a real Anvil.

The ``market`` fixture is parametrized, so every test using it runs against both. The
Anvil deployment (``deployed``, in ``tests/conftest.py``) happens once per module; the
shared ``chain`` fixture's snapshot/revert isolates each test (providers register and
stake inside the snapshot).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contracts.harness import Market, fake_market, real_market


@pytest.fixture(params=["fake", "anvil"])
def market(request: pytest.FixtureRequest) -> Iterator[Market]:
    if request.param == "fake":
        from devnet.anvil import dev_accounts

        yield fake_market([a.private_key for a in dev_accounts()])
        return
    addresses = request.getfixturevalue("deployed")
    node = request.getfixturevalue("chain")
    keys = [a.private_key for a in node.accounts]
    yield real_market(node.rpc_url, node.chain_id, addresses, keys, node.rpc)
