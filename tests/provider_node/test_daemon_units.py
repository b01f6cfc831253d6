"""Daemon parts on fakes: settings errors, stake upkeep, the challenge responder, the CLI."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from contracts.errors import InsufficientGasMoney
from contracts.models import ProviderInfo, Receipt
from proofs.challenge_check import ExactChecker
from proofs.challenge_wire import challenge_from_wire, from_opened_row
from protocol.errors import ConfigError
from protocol.identity import Identity
from protocol.ids import Address, Wei, to_wei
from protocol.messages import (
    Challenge,
    ChallengeOpen,
    ChallengeResponse,
    ChallengeRows,
    ErrorReply,
    Message,
)
from protocol.p2p.testing import dev_private_key
from protocol.signing import decode_signed, encode_signed, sign_message
from provider_node import staking
from provider_node.challenges import ChallengeServer
from provider_node.commands import register_commands
from provider_node.settings import load_settings
from provider_node.staking import (
    FALLBACK_GAS_PER_JOB,
    GAS_BOUNDS,
    InsufficientFunds,
    ensure_staked,
)

PROVIDER = Identity.from_private_key(dev_private_key(1, "daemon-units"))
COORDINATOR = Identity.from_private_key(dev_private_key(2, "daemon-units"))


def test_missing_settings_name_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("PROVIDER_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PROVIDER_RPC_URL", "http://127.0.0.1:8545")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    for name in ("PROVIDER_MARKET_ADDRESS", "PROVIDER_KEYSTORE", "PROVIDER_WORK_DIR"):
        assert name in text
    assert "PROVIDER_RPC_URL" not in text


def test_password_file_is_read_and_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = "0x" + "11" * 20
    (tmp_path / "pw").write_text("hunter2\n")
    settings = load_settings(
        rpc_url="http://x",
        market_address=address,
        registry_address=address,
        token_address=address,
        keystore=tmp_path / "k.json",
        password_file=tmp_path / "pw",
        ipfs_api="http://y",
        work_dir=tmp_path,
    )
    assert settings.keystore_password().get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    with pytest.raises(ConfigError, match="PROVIDER_MARKET_ADDRESS"):
        load_settings(**{**settings.model_dump(), "market_address": "0x12"})


@dataclass
class StakeChain:
    balance: int
    registered: bool = False
    stake_amount: int = 0
    calls: list[str] = field(default_factory=list)
    address: Address = PROVIDER.address
    gas_money: int = 10**18
    """Wei of the chain's native token; gas is priced at 1 gwei."""

    def gas_shortfall(self, gas: int) -> InsufficientGasMoney | None:
        needed = gas * 10**9
        if self.gas_money >= needed:
            return None
        return InsufficientGasMoney(
            account=self.address, needed_wei=needed, balance_wei=self.gas_money
        )

    def provider_info(self, provider: str) -> ProviderInfo:
        return ProviderInfo(
            address=self.address,
            registered=self.registered,
            group=0,
            stake=Wei(self.stake_amount),
            locked=Wei(0),
            free=Wei(self.stake_amount),
            earned=Wei(0),
            completed=0,
            slashed=0,
            unbonding=Wei(0),
            unbond_ready_at=0,
        )

    def token_balance(self, owner: str) -> Wei:
        return Wei(self.balance)

    def register(self, group: int = 0) -> Receipt:
        self.calls.append("register")
        self.registered = True
        return Receipt("0x", 1, 0)

    def stake(self, amount: int) -> Receipt:
        self.calls.append(f"stake {amount}")
        self.balance -= amount
        self.stake_amount += amount
        return Receipt("0x", 1, 0)


def test_ensure_staked_registers_and_tops_up() -> None:
    chain = StakeChain(balance=to_wei("500"), stake_amount=to_wei("30"), registered=False)
    report = ensure_staked(chain, to_wei("100"))  # type: ignore[arg-type]
    assert chain.calls == ["register", f"stake {to_wei('70')}"]
    assert report.registered_now and report.info.stake == to_wei("100")
    again = ensure_staked(chain, to_wei("100"))  # type: ignore[arg-type]
    assert not again.registered_now and again.staked_now == 0 and len(chain.calls) == 2


def test_no_gas_money_sends_nothing_and_says_what_to_do() -> None:
    # Enough for registering (80,000 gas at 1 gwei), not for staking (120,000).
    chain = StakeChain(balance=to_wei("500"), gas_money=100_000 * 10**9)
    with pytest.raises(InsufficientGasMoney, match="native token for gas") as info:
        ensure_staked(chain, to_wei("100"))  # type: ignore[arg-type]
    assert chain.calls == ["register"]  # the stake was refused before it was sent
    assert info.value.needed_wei == GAS_BOUNDS["stake"] * 10**9
    for action in (staking.register, staking.withdraw):
        with pytest.raises(InsufficientGasMoney):
            action(StakeChain(balance=0, gas_money=0))  # type: ignore[arg-type]
    with pytest.raises(InsufficientGasMoney):
        staking.stake(StakeChain(balance=to_wei("5"), gas_money=0), to_wei("1"))  # type: ignore[arg-type]


def test_gas_for_the_on_chain_fallback_is_warned_about() -> None:
    rich = StakeChain(balance=0, gas_money=10**18)
    assert staking.fallback_gas_warning(rich, 2) is None  # type: ignore[arg-type]
    poor = StakeChain(balance=0, gas_money=FALLBACK_GAS_PER_JOB * 10**9)  # one job's worth
    assert staking.fallback_gas_warning(poor, 1) is None  # type: ignore[arg-type]
    warning = staking.fallback_gas_warning(poor, 2)  # type: ignore[arg-type]
    assert warning is not None and "committing and revealing 2 job(s) on chain" in warning


def test_underfunded_stake_names_the_missing_amount() -> None:
    chain = StakeChain(balance=to_wei("20"), registered=True)
    with pytest.raises(InsufficientFunds) as info:
        ensure_staked(chain, to_wei("100"))  # type: ignore[arg-type]
    assert info.value.missing == to_wei("80")
    assert "80 tokens are missing" in str(info.value)
    assert chain.calls == []


async def _ask(server: ChallengeServer, body: Message) -> Message:
    data = encode_signed(sign_message(body, COORDINATOR))
    return decode_signed(await server.handle(data, COORDINATOR.peer_id)).body


def _challenge(cid: int, dtype: str = "fp32", m: int = 64, k: int = 64, reps: int = 2) -> Challenge:
    return Challenge(
        challenge_id=bytes([cid]) * 16,
        coordinator=COORDINATOR.address,
        provider=PROVIDER.address,
        seed=bytes([cid]) * 32,
        dtype=dtype,  # type: ignore[arg-type]
        m=m,
        k=k,
        reps=reps,
        deadline=int(time.time()) + 60,
    )


async def test_challenge_round_trip_verifies() -> None:
    server = ChallengeServer(PROVIDER)
    challenge = _challenge(1, "fp32", m=64, k=64, reps=2)
    response = await _ask(server, challenge)
    assert isinstance(response, ChallengeResponse) and response.elapsed_s > 0
    opened = ChallengeOpen(
        challenge_id=challenge.challenge_id, coordinator=COORDINATOR.address, rows=(3, 64 + 10)
    )
    rows = await _ask(server, opened)
    assert isinstance(rows, ChallengeRows)
    ch = challenge_from_wire(challenge)
    checker = ExactChecker(ch)
    for row in rows.rows:
        assert checker.check(response.merkle_root, from_opened_row(ch, row)) is None


async def test_challenge_work_is_bounded_by_the_providers_own_claim() -> None:
    # 3 s at 1e-6 TFLOPS is 3e6 flops: one 64 x 64 x 64 product (524,288) fits, 8 do not.
    server = ChallengeServer(PROVIDER, claims={"bf16": 1e-6}, min_flops=0.0)
    assert server.max_flops("bf16") == pytest.approx(3e6)
    small = await _ask(server, _challenge(3, "bf16", reps=1))
    assert isinstance(small, ChallengeResponse)
    big = await _ask(server, _challenge(4, "bf16", reps=8))
    assert isinstance(big, ErrorReply) and "exceeds" in big.message
    unclaimed = await _ask(server, _challenge(5, "fp16", reps=1))
    assert isinstance(unclaimed, ErrorReply) and "claims no fp16" in unclaimed.message


async def test_challenges_are_rate_limited_per_coordinator() -> None:
    now = [0.0]
    server = ChallengeServer(PROVIDER, rate_max=2, rate_window_s=60.0, monotonic=lambda: now[0])
    for cid in (6, 7):
        assert isinstance(await _ask(server, _challenge(cid, m=16, k=16)), ChallengeResponse)
    third = await _ask(server, _challenge(8, m=16, k=16))
    assert isinstance(third, ErrorReply) and "retry later" in third.message
    assert third.code.name == "BUSY"
    now[0] = 61.0  # the window has passed
    assert isinstance(await _ask(server, _challenge(9, m=16, k=16)), ChallengeResponse)


async def test_challenge_from_another_peer_is_refused() -> None:
    server = ChallengeServer(PROVIDER)
    data = encode_signed(sign_message(_challenge(2, m=16, k=16), COORDINATOR))
    reply = decode_signed(await server.handle(data, PROVIDER.peer_id)).body
    assert isinstance(reply, ErrorReply)


def test_cli_commands_are_registered() -> None:
    app = typer.Typer()
    register_commands(app)
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "register", "stake", "unbond", "withdraw", "status"):
        assert command in result.output
    run_help = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert "--unsafe-process-runtime" in run_help.output


def test_status_shows_the_consent_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from provider_node import commands

    for key in list(os.environ):
        if key.startswith("PROVIDER_"):
            monkeypatch.delenv(key)
    unused = "0x" + "11" * 20
    env = {
        "RPC_URL": "http://x",
        "MARKET_ADDRESS": unused,
        "REGISTRY_ADDRESS": unused,
        "TOKEN_ADDRESS": unused,
        "KEYSTORE": str(tmp_path / "k.json"),
        "IPFS_API": "http://y",
        "WORK_DIR": str(tmp_path),
        "COORDINATOR_MULTIADDR": f"/ip4/127.0.0.1/tcp/4001/p2p/{COORDINATOR.peer_id}",
        "PRICE_PER_GPU_HOUR": "2",
        "MAX_LOCK_S": "86400",
    }
    for key, value in env.items():
        monkeypatch.setenv(f"PROVIDER_{key}", value)
    chain = StakeChain(balance=0, registered=True, stake_amount=to_wei("100"))
    monkeypatch.setattr(commands, "_chain", lambda settings: chain)
    app = typer.Typer()
    register_commands(app)
    shown = CliRunner().invoke(app, ["status", "--json"])
    assert shown.exit_code == 0, shown.output
    policy = json.loads(shown.output)["policy"]
    assert policy == {
        "coordinators": [COORDINATOR.address],
        "min_rate_per_gpu_hour": "2.000000",
        "min_rate_per_cpu_hour": "2.000000",
        "max_lock_s": 86400,
        "max_locked_stake": "100.000000",
        "max_locked_stake_is_all_stake": True,
    }
    monkeypatch.setenv("PROVIDER_MAX_LOCKED_STAKE", str(to_wei("40")))
    text = CliRunner().invoke(app, ["status"])
    assert text.exit_code == 0, text.output
    assert f"coordinators: {COORDINATOR.address}" in text.output
    assert "most locked:  40.000000" in text.output and "all stake" not in text.output
    assert "longest lock: 86400 s" in text.output
    assert json.loads(shown.output)["gas_warning"] is None and "warning" not in text.output
    chain.gas_money = 10**14  # less than one on-chain commit and reveal costs
    poor = CliRunner().invoke(app, ["status", "--json"])
    assert poor.exit_code == 0  # a warning, not a failure: the fallback may never be needed
    assert "committing and revealing 1 job(s) on chain" in poor.output


def test_advertised_packages_are_cut_to_the_advert_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from protocol.packages import MAX_OFFERED
    from provider_node import advertiser
    from provider_node.advertiser import installed_packages, python_packages

    # A logger of its own with its own level and handler: tests earlier in the session
    # configure logging (levels, disabled loggers) in ways this must not depend on.
    logger = logging.getLogger("test.advertised_packages")
    logger.setLevel(logging.WARNING)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    monkeypatch.setattr(advertiser, "log", logger)

    found = {f"pkg-{i:04d}": "1.0.0" for i in range(1000)}
    kept = python_packages(found, budget_bytes=10**9)
    assert len(kept) == MAX_OFFERED and list(kept) == sorted(found)[:MAX_OFFERED]
    small = python_packages(found, budget_bytes=200)
    assert 0 < len(small) and len(json.dumps(small, separators=(",", ":"))) <= 200  # as signed
    assert any(line.startswith("advertising") for line in seen)
    assert python_packages({"torch": "2.13.0"}) == {"torch": "2.13.0"}
    assert installed_packages()["torch"].startswith("2.")  # names in PEP 503 form
