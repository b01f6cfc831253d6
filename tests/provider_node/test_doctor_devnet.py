"""``provider doctor`` against a real Anvil with the market deployed, a real IPFS daemon and
this machine's own torch, bubblewrap and cgroups: every verdict it prints is true here, and
``provider run`` refuses to start on a failing must-have with the doctor's line."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import gpumarket_cli
from contracts.deploy import fund_accounts
from devnet.anvil import AnvilNode
from devnet.ipfs import IpfsNode
from protocol.identity import import_private_key
from protocol.ids import to_wei
from provider_node import doctor
from provider_node.doctor import CheckStatus, Report, run_doctor
from provider_node.runtimes.bwrap import BwrapRuntime
from provider_node.settings import ProviderSettings
from tests.contracts.harness import Market

pytestmark = pytest.mark.integration

PASSWORD = "doctor-test"


def provider_settings(
    tmp_path: Path, key: str, deployed: dict[str, str], rpc_url: str, ipfs: IpfsNode, **extra: Any
) -> tuple[ProviderSettings, dict[str, str]]:
    keystore = tmp_path / "provider.keystore.json"
    if not keystore.exists():
        import_private_key(keystore, key, PASSWORD, scrypt_n=2**4)
        (tmp_path / "password").write_text(PASSWORD + "\n")
    env = {
        "PROVIDER_RPC_URL": rpc_url,
        "PROVIDER_MARKET_ADDRESS": deployed["market"],
        "PROVIDER_REGISTRY_ADDRESS": deployed["registry"],
        "PROVIDER_TOKEN_ADDRESS": deployed["token"],
        "PROVIDER_KEYSTORE": str(keystore),
        "PROVIDER_PASSWORD_FILE": str(tmp_path / "password"),
        "PROVIDER_IPFS_API": ipfs.api_url,
        "PROVIDER_WORK_DIR": str(tmp_path / "work"),
        "PROVIDER_CPU_ONLY": "true",
        "PROVIDER_STAKE": "100",
        **{f"PROVIDER_{k.upper()}": str(v) for k, v in extra.items()},
    }
    fields = {k.removeprefix("PROVIDER_").lower(): v for k, v in env.items()}
    return ProviderSettings(**fields), env  # type: ignore[arg-type]


def show(report: Report) -> None:
    for line in doctor.report_lines(report):
        print(line)


def test_doctor_prints_true_verdicts_on_this_machine_and_devnet(
    real: Market, deployed: dict[str, str], ipfs: IpfsNode, tmp_path: Path
) -> None:
    fresh = real.accounts["provider0"].key.hex()  # registered and staked by the harness
    settings, _ = provider_settings(tmp_path, fresh, deployed, real.rpc_url, ipfs)
    report = run_doctor(settings)
    show(report)
    verdict = {c.name: c.verdict for c in report.checks}
    # This machine, measured by other means than the doctor's.
    gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert verdict["gpus"] is (CheckStatus.OK if gpu_count == 0 else verdict["gpus"])
    bwrap_ok = shutil.which("bwrap") is not None and BwrapRuntime().unavailable_reason() is None
    assert (verdict["bwrap"] is CheckStatus.OK and verdict["cgroups"] is CheckStatus.OK) == bwrap_ok
    assert verdict["keystore"] is CheckStatus.OK
    assert verdict["rpc"] is CheckStatus.OK and verdict["ipfs"] is CheckStatus.OK
    assert verdict["disk"] is not CheckStatus.FAIL
    info = real.providers[0].provider_info(real.providers[0].address)
    assert info.registered and verdict["registration"] is CheckStatus.OK
    assert (verdict["stake"] is CheckStatus.OK) == (
        info.stake + real.providers[0].token_balance(real.providers[0].address)
        >= settings.stake_wei
    )
    assert verdict["gas"] is CheckStatus.OK  # Anvil's accounts hold 10,000 ETH
    assert report.get("port PROVIDER_P2P_PORT").verdict is CheckStatus.WARN  # loopback only


def test_doctor_sees_a_new_account_without_tokens_gas_or_a_right_clock(
    real: Market, chain: AnvilNode, deployed: dict[str, str], ipfs: IpfsNode, tmp_path: Path
) -> None:
    new = chain.accounts[8]  # not registered, holds no tokens
    settings, _ = provider_settings(tmp_path, new.private_key, deployed, real.rpc_url, ipfs)
    address = new.address
    report = run_doctor(settings)
    show(report)
    assert report.get("registration").verdict is CheckStatus.WARN  # the daemon registers at start
    stake = report.get("stake")
    assert stake.blocking and "send the account 100 tokens" in (stake.fix or "")

    fund_accounts(
        real.rpc_url,
        real.accounts["deployer"].key.hex(),
        deployed["token"],
        [address],
        to_wei("150"),
    )
    assert run_doctor(settings).get("stake").verdict is CheckStatus.OK

    real.rpc("anvil_setBalance", [address, hex(10**6)])  # no gas for register and stake
    poor = run_doctor(settings)
    assert poor.get("gas").blocking and poor.get("registration").blocking

    ahead = real.now() + 3600
    real.rpc("evm_setNextBlockTimestamp", [ahead])
    real.rpc("evm_mine", [])
    clock = run_doctor(settings).get("clock")
    print(clock.line())
    assert clock.verdict is CheckStatus.FAIL and "behind" in clock.found


def test_cli_doctor_json_and_run_refusing_to_start(
    real: Market, deployed: dict[str, str], ipfs: IpfsNode, tmp_path: Path
) -> None:
    key = real.accounts["provider1"].key.hex()
    _, env = provider_settings(tmp_path, key, deployed, real.rpc_url, ipfs)
    runner = CliRunner()
    shown = runner.invoke(gpumarket_cli.app, ["provider", "doctor", "--json"], env=env)
    print(shown.output)
    view = json.loads(shown.output)
    assert view["ready"] is True and shown.exit_code == 0
    assert {c["name"] for c in view["checks"]} >= {"gpus", "bwrap", "cgroups", "rpc", "stake"}

    greedy = {**env, "PROVIDER_STAKE": str(Decimal(10**6))}
    refused = runner.invoke(gpumarket_cli.app, ["provider", "doctor"], env=greedy)
    assert refused.exit_code == 1 and "FAIL stake (must-have)" in refused.output
    run = runner.invoke(gpumarket_cli.app, ["provider", "run"], env=greedy)
    print(run.output)
    assert run.exit_code == 1
    assert "not starting" in run.output and "FAIL stake (must-have)" in run.output
    assert not (tmp_path / "work" / "provider.json").exists()
