"""One devnet for the whole end-to-end session: Anvil, IPFS, contracts, a coordinator
and three provider daemons, started by :func:`devnet.network.up` and always stopped by
:func:`devnet.network.down`.

Tests share it and stay independent by using fresh requester accounts and jobs, and by
putting back any daemon they crash. ``GPUMARKET_E2E_STATE=path/state.json`` runs the suite
against a devnet that is already up (it is then left running).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devnet import network
from tests.e2e.market import Market

PROVIDERS = 3
ORDER = (
    "test_honest",
    "test_dashboard",
    "test_quote_cost",
    "test_claims",
    "test_lying_provider",
    "test_spot_check",
    "test_bad_input",
    "test_adverts",
    "test_crashes",
    "test_bad_jobs",
)
"""Modules that crash daemons or fail jobs run after those that only need a calm market."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.path.stem
        return ORDER.index(module) if module in ORDER else len(ORDER)

    e2e = [i for i in items if "tests/e2e/" in str(i.path)]
    if e2e:
        others = [i for i in items if i not in e2e]
        items[:] = others + sorted(e2e, key=rank)


@pytest.fixture(scope="session")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    """A full devnet with ``PROVIDERS`` providers, up for the session."""
    workdir = tmp_path_factory.mktemp("e2e")
    existing = os.environ.get("GPUMARKET_E2E_STATE")
    if existing:
        yield Market(Path(existing), workdir)
        return
    state_file = workdir / "devnet" / "state.json"
    try:
        network.up(state_file, providers=PROVIDERS)
        market = Market(state_file, workdir)
        market.wait_providers(lambda listed: len(listed) >= PROVIDERS, timeout=60)
        yield market
    finally:
        if state_file.exists():
            network.down(state_file)


@pytest.fixture
def repo() -> Path:
    return Path(__file__).resolve().parents[2]
