"""Money out: after a settled job, the requester, a paid provider and the coordinator each
run ``gpumarket wallet claim`` and receive exactly what the market owed them, in tokens,
and the market contract's balance drops by the same sum."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from protocol.identity import Identity, save_keystore
from protocol.ids import to_wei
from tests.e2e.market import FAST_SCRYPT_N, PASSWORD, REPO, Market

pytestmark = pytest.mark.integration


def cast_keystore(path: Path, private_key: str) -> None:
    """A keystore as ``cast wallet new`` writes it: V3 JSON, no suffix, no address."""
    keystore = Account.encrypt(
        bytes.fromhex(private_key.removeprefix("0x")),
        PASSWORD,
        kdf="scrypt",
        iterations=FAST_SCRYPT_N,
    )
    del keystore["address"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keystore))


def test_every_role_claims_exactly_what_it_is_owed(market: Market, tmp_path: Path) -> None:
    requester = market.new_requester()
    submitted = market.submit(REPO / "examples" / "matmul" / "job.yaml", requester)
    job = submitted["job"]
    assert job["state"] == "settled", job
    paid = next(p["address"] for p in job["providers"] if p["outcome"] == "paid")
    provider = next(a for a in market.state.accounts if a.address == paid)
    coordinator = market.account("coordinator")

    # The provider's key as the wallet holds it; the coordinator's as cast made it, imported.
    save_keystore(
        market.keystore_dir / "claim-provider.json",
        Identity.from_private_key(provider.private_key),
        PASSWORD,
        scrypt_n=FAST_SCRYPT_N,
    )
    cast_file = tmp_path / "foundry" / "coordinator"
    cast_keystore(cast_file, coordinator.private_key)
    imported = market.cli(
        "wallet",
        "import",
        "claim-coordinator",
        "--keystore",
        str(cast_file),
        "--password-file",
        str(market.password_file),
        devnet=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert coordinator.address in imported.stdout
    assert coordinator.private_key.removeprefix("0x") not in imported.stdout + imported.stderr

    chain = market.chain()
    market_address = market.deployment().market
    refund = int(market.job_events(job["job_id"], "JobSettled")[0].args["refund"])
    assert chain.claimable(requester.address) == refund  # a fresh requester: this job only
    held_before = chain.token_balance(market_address)
    received = 0
    for name, address in (
        (requester.name, requester.address),
        ("claim-provider", provider.address),
        ("claim-coordinator", coordinator.address),
    ):
        owed = chain.claimable(address)
        tokens = chain.token_balance(address)
        assert owed > 0, f"{name} is owed nothing"
        done = market.cli_json(
            "wallet", "claim", "-a", name, "--password-file", str(market.password_file)
        )
        assert done["address"] == address
        assert to_wei(done["claimable"]) == to_wei(done["claimed"]) == owed
        assert to_wei(done["received"]) == owed
        assert to_wei(done["tokens_before"]) == tokens
        assert to_wei(done["tokens_after"]) == tokens + owed == chain.token_balance(address)
        assert done["tx"].startswith("0x")
        assert chain.claimable(address) == 0
        received += owed
    assert held_before - chain.token_balance(market_address) == received

    # Claiming again: nothing owed, exit 0, no transaction, no password asked.
    again = market.cli("wallet", "claim", "-a", requester.name)
    assert again.returncode == 0, again.stderr
    assert "nothing to claim" in again.stdout
    assert chain.token_balance(market_address) == held_before - received
