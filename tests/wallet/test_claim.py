"""`wallet claim` on the in-memory chain: every role claims what it is owed in one
transaction; with nothing owed no transaction is sent and no password is asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contracts.client import ChainClient
from contracts.errors import RpcError
from devnet.anvil import dev_accounts
from protocol.identity import Identity, save_keystore
from protocol.ids import Wei, to_wei
from tests.contracts.harness import CAP, FEE, GOOD, PRICE, RATE, Market, fake_market
from wallet import claims, jobs
from wallet.settings import WalletSettings

PASSWORD = "claim-test"


def flat(text: str) -> str:
    """CLI output with the console's line wrapping undone."""
    return " ".join(text.split())


def expected_pay(runtime_ms: int = 100_000) -> int:
    return min(PRICE, -(-RATE * runtime_ms // 3_600_000))


@pytest.fixture
def market() -> Market:
    """A settled redundancy-2 job: requester refund, coordinator fee, two providers' pay."""
    m = fake_market([a.private_key for a in dev_accounts()])
    job_id = m.create(2)
    m.assign(job_id, 0, 1)
    m.coordinator.settle(m.settlement(job_id, [GOOD, GOOD]))
    return m


def test_every_role_claims_exactly_what_it_is_owed(market: Market) -> None:
    pay = expected_pay()
    escrow = 4 * CAP + FEE
    owed = {
        market.requester: escrow - 2 * pay - FEE,
        market.coordinator: FEE,
        market.providers[0]: pay,
        market.providers[1]: pay,
    }
    held = market.held_by_market()
    for client, amount in owed.items():
        outcome = claims.claim(client)
        assert outcome.due.total == amount
        assert outcome.claimed == outcome.received == amount
        assert outcome.tx_hash is not None
        assert client.claimable(client.address) == 0
    assert held - market.held_by_market() == sum(owed.values())


def test_credit_and_earnings_are_told_apart(market: Market) -> None:
    provider = market.providers[0]
    assert claims.claimable(provider, provider.address) == claims.Claimable(
        provider.address, Wei(0), Wei(expected_pay())
    )
    coordinator = market.coordinator
    due = claims.claimable(coordinator, coordinator.address)
    assert (due.credit, due.earnings, due.total) == (FEE, 0, FEE)


def test_nothing_to_claim_sends_nothing(market: Market) -> None:
    idle = market.providers[2]
    block = market.world.block if market.world else 0
    outcome = claims.claim(idle)
    assert outcome.tx_hash is None and outcome.claimed == outcome.received == 0
    assert market.world is not None and market.world.block == block  # no transaction
    claims.claim(market.providers[0])
    assert claims.claim(market.providers[0]).tx_hash is None  # a second claim finds nothing


def test_a_nonce_taken_by_a_daemon_with_the_same_key_is_retried(
    market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    coordinator = market.coordinator
    real, refusals = coordinator.claim, iter([RpcError("node rejected: nonce too low")])

    def claim() -> Any:
        for refusal in refusals:
            raise refusal
        return real()

    monkeypatch.setattr(coordinator, "claim", claim)
    monkeypatch.setattr(claims.time, "sleep", lambda _: None)
    assert claims.claim(coordinator).received == FEE
    # Any other node error is not retried.
    calls: list[int] = []

    def unreachable() -> Any:
        calls.append(1)
        raise RpcError("cannot reach the node")

    monkeypatch.setattr(market.providers[0], "claim", unreachable)
    with pytest.raises(RpcError, match="cannot reach"):
        claims.claim(market.providers[0])
    assert calls == [1]


# ------------------------------------------------------------------------ the CLI
@pytest.fixture
def cli_env(
    market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, str], Path]:
    """Keystores for the requester and provider 2, and the CLI's chain bound to the fake."""
    keystores = tmp_path / "keys"
    for name in ("requester", "provider2"):
        key = "0x" + bytes(market.accounts[name].key).hex()
        save_keystore(
            keystores / f"{name}.json", Identity.from_private_key(key), PASSWORD, scrypt_n=2**12
        )
    password = tmp_path / "pw"
    password.write_text(PASSWORD + "\n")
    assert market.world is not None
    world = market.world

    def reader(*_: Any) -> ChainClient:
        return world.client(market.accounts["deployer"])

    def signer(_settings: WalletSettings, identity: Identity) -> ChainClient:
        return next(
            world.client(a) for a in market.accounts.values() if a.address == identity.address
        )

    monkeypatch.setattr(claims, "Web3Chain", reader)
    monkeypatch.setattr(jobs, "chain_for", signer)
    env = {
        "WALLET_KEYSTORE_DIR": str(keystores),
        "WALLET_FOUNDRY_KEYSTORE_DIR": str(tmp_path / "no-foundry"),
        "WALLET_RPC_URL": "http://fake",
        "WALLET_CHAIN_ID": "31337",
        "WALLET_TOKEN_ADDRESS": market.deployment.token,
        "WALLET_REGISTRY_ADDRESS": market.deployment.registry,
        "WALLET_MARKET_ADDRESS": market.deployment.market,
    }
    return env, password


def test_cli_claims_and_reports_tokens_received(
    market: Market, cli_env: tuple[dict[str, str], Path]
) -> None:
    from gpumarket_cli import app

    env, password = cli_env
    requester = market.requester
    owed = requester.claimable(requester.address)
    before = requester.token_balance(requester.address)
    args = ["wallet", "claim", "-a", "requester", "--password-file", str(password)]
    done = CliRunner().invoke(app, [*args, "--json"], env=env)
    assert done.exit_code == 0, done.output
    shown = json.loads(done.stdout)
    assert to_wei(shown["claimable"]) == to_wei(shown["claimed"]) == owed
    assert to_wei(shown["received"]) == owed
    assert to_wei(shown["tokens_before"]) == before
    assert (
        to_wei(shown["tokens_after"]) == before + owed == requester.token_balance(requester.address)
    )
    assert shown["tx"].startswith("0x") and requester.claimable(requester.address) == 0
    again = CliRunner().invoke(app, args, env=env)
    assert again.exit_code == 0 and "nothing to claim" in again.stdout, again.output


def test_cli_with_nothing_to_claim_needs_no_password(
    market: Market, cli_env: tuple[dict[str, str], Path]
) -> None:
    from gpumarket_cli import app

    env, _ = cli_env
    block = market.world.block if market.world else 0
    done = CliRunner().invoke(app, ["wallet", "claim", "-a", "provider2", "--json"], env=env)
    assert done.exit_code == 0, done.output
    shown = json.loads(done.stdout)
    assert shown["tx"] is None and shown["claimable"] == shown["received"] == "0"
    assert market.world is not None and market.world.block == block
    text = CliRunner().invoke(app, ["wallet", "claim", "-a", "provider2"], env=env)
    assert text.exit_code == 0 and "nothing to claim" in text.stdout


def test_cli_claim_errors_say_what_to_do(
    market: Market, cli_env: tuple[dict[str, str], Path]
) -> None:
    from gpumarket_cli import app

    env, _ = cli_env
    no_rpc = {k: v for k, v in env.items() if k != "WALLET_RPC_URL"}
    done = CliRunner().invoke(app, ["wallet", "claim", "-a", "requester"], env=no_rpc)
    assert done.exit_code == 1 and "set WALLET_RPC_URL or pass --devnet" in flat(done.output)
    unknown = CliRunner().invoke(app, ["wallet", "claim", "-a", "nobody"], env=env)
    assert unknown.exit_code == 1 and "have: provider2, requester" in flat(unknown.output)
