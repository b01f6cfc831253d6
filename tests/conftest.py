"""Shared fixtures: real daemons on loopback, started once per session.

* ``anvil``: a real Anvil node (session scope) with ten funded dev accounts.
* ``chain``: the same node, reverted to an ``evm_snapshot`` after each test, so tests
  never see each other's transactions.
* ``deployed``: the market contracts deployed on ``anvil`` (once per module), and
  ``real``: a :class:`tests.contracts.harness.Market` of Web3 clients over them, inside
  ``chain``'s snapshot.
* ``ipfs``: a real IPFS daemon serving the Kubo RPC API (session scope).
* ``libp2p_hosts``: an async factory starting N connected libp2p hosts on 127.0.0.1.

Every daemon is stopped in ``finally`` by its process group, whatever the tests did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from devnet.anvil import AnvilNode, start_anvil
from devnet.ipfs import IpfsNode, start_ipfs


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    """A real Anvil on a free loopback port for the whole test session."""
    node = start_anvil(tmp_path_factory.mktemp("anvil"))
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def chain(anvil: AnvilNode) -> Iterator[AnvilNode]:
    """Anvil isolated per test: snapshot before, revert after. Local nonce counters are
    forgotten on both sides: a test that ran its own Anvil (a devnet) in this process left
    counters for the same chain id and accounts behind."""
    _forget_local_nonces()
    snapshot = anvil.snapshot()
    try:
        yield anvil
    finally:
        anvil.revert(snapshot)
        _forget_local_nonces()


def _forget_local_nonces() -> None:
    """A revert rolls account nonces back; local nonce counters must resync from the node."""
    from contracts import sender

    sender._STATES.clear()


@pytest.fixture(scope="module")
def deployed(anvil: AnvilNode) -> dict[str, str]:
    from tests.contracts.harness import deploy_real

    return deploy_real(anvil.rpc_url, [a.private_key for a in anvil.accounts])


@pytest.fixture
def real(deployed: dict[str, str], chain: AnvilNode) -> Any:
    from tests.contracts.harness import real_market

    keys = [a.private_key for a in chain.accounts]
    return real_market(chain.rpc_url, chain.chain_id, deployed, keys, chain.rpc)


@pytest.fixture(scope="session")
def ipfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpfsNode]:
    """A real IPFS daemon (Kubo if on PATH, else js-ipfs), loopback only."""
    node = start_ipfs(tmp_path_factory.mktemp("ipfs"))
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def libp2p_hosts() -> Callable[..., AbstractAsyncContextManager[Any]]:
    """``async with libp2p_hosts(n) as hosts:`` starts n connected hosts on 127.0.0.1."""
    from protocol.p2p.testing import start_hosts

    return start_hosts


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
