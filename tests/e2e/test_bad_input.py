"""Bad requests the wallet must refuse with a clear error before paying anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.market import REPO, Market, Requester
from wallet.settings import DEFAULT_MAX_INPUT_BYTES

pytestmark = pytest.mark.integration

MATMUL = REPO / "examples" / "matmul"


def spec_dir(directory: Path, spec: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_bytes((MATMUL / "main.py").read_bytes())
    (directory / "job.yaml").write_text(spec)
    return directory / "job.yaml"


def refused(market: Market, requester: Requester, spec: Path) -> str:
    """Submit ``spec``; assert it failed cleanly, created no job and cost nothing."""
    chain = market.chain()
    tokens = chain.token_balance(requester.address)
    nonce = chain.account_info(requester.address).nonce
    auth = ["--account", requester.name, "--password-file", str(market.password_file)]
    done = market.cli("job", "submit", str(spec), *auth, "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert chain.token_balance(requester.address) == tokens
    assert chain.account_info(requester.address).nonce == nonce
    return " ".join(done.stderr.split())


@pytest.fixture(scope="module")
def requester(market: Market) -> Requester:
    return market.new_requester()


def test_malformed_yaml_is_refused(market: Market, requester: Requester, tmp_path: Path) -> None:
    spec = spec_dir(tmp_path, "name: broken\nruntime: {kind: torch, entrypoint: main.py\n")
    error = refused(market, requester, spec)
    assert "YAML" in error and "line" in error


@pytest.mark.parametrize(
    ("typo", "fixed"),
    [("timeout: 2m", "timout: 2m"), ("compare: exact", "comapre: exact")],
)
def test_an_unknown_field_suggests_the_closest_name(
    market: Market, requester: Requester, tmp_path: Path, typo: str, fixed: str
) -> None:
    text = (MATMUL / "job.yaml").read_text()
    assert typo in text
    error = refused(market, requester, spec_dir(tmp_path, text.replace(typo, fixed)))
    wrong, right = fixed.split(":")[0], typo.split(":")[0]
    assert wrong in error and f"did you mean '{right}'" in error


def test_oversized_inputs_are_refused_before_upload(
    market: Market, requester: Requester, tmp_path: Path
) -> None:
    spec = spec_dir(tmp_path, (MATMUL / "job.yaml").read_text())
    with (tmp_path / "huge.bin").open("wb") as fh:  # sparse: costs no disk
        fh.truncate(DEFAULT_MAX_INPUT_BYTES + 1)
    try:
        error = refused(market, requester, spec)
    finally:
        os.unlink(tmp_path / "huge.bin")
    assert str(DEFAULT_MAX_INPUT_BYTES) in error and "by cid" in error


def test_a_spec_needing_more_than_the_requester_holds_is_refused(
    market: Market, tmp_path: Path
) -> None:
    poor = market.new_requester(tokens="1")
    error = refused(market, poor, spec_dir(tmp_path, (MATMUL / "job.yaml").read_text()))
    assert "missing" in error and "10.1" in error
