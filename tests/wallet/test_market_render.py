"""How challenged speeds read: `market providers`, `job explain` and `provider status`."""

from __future__ import annotations

from protocol.views import ProviderRow, SpeedCheckView, ago, describe_checks
from wallet.market import tflops

NOW = 1_800_000_000.0


def row(figures: dict[str, float], checks: dict[str, SpeedCheckView]) -> ProviderRow:
    return ProviderRow(
        address="0x" + "ab" * 20,
        peer_id="peer",
        multiaddrs=[],
        gpus=[],
        gpu_model="H200",
        gpu_count=8,
        memory_bytes=0,
        tflops=figures,
        verified=[d for d, c in checks.items() if c.passed],
        checks=checks,
        price_per_gpu_hour="1",
        price_per_cpu_hour="1",
        reputation=0.5,
        free_gpus=8,
        free_slots=1,
        utilization=0.0,
        registered=True,
        free_stake="0",
        driver=None,
        cuda=None,
        torch="2.11",
        last_seen=NOW,
    )


def test_figures_say_when_a_challenge_verified_them_and_which_failed() -> None:
    checks = {
        "bf16": SpeedCheckView(passed=True, tflops=780.0, devices=8, at=NOW - 720),
        "fp16": SpeedCheckView(passed=False, tflops=650.0, devices=8, at=NOW - 60, reason="x"),
    }
    shown = tflops(row({"bf16": 780.0, "fp32": 51.0}, checks), NOW)
    assert shown == "bf16 780 verified 12 min ago, fp32 51, fp16 failed 60 s ago"
    assert tflops(row({}, {}), NOW) == "-"


def test_each_providers_latest_challenges_read_as_a_sentence() -> None:
    checks = {
        "bf16": SpeedCheckView(passed=True, tflops=780.0, devices=8, at=NOW - 720),
        "fp32": SpeedCheckView(
            passed=False, tflops=51.0, devices=1, at=NOW - 30, reason="took 3.1s, bound 2.2s"
        ),
    }
    assert describe_checks(checks, NOW) == (
        "bf16 780 TFLOPS, verified 12 min ago on 8 GPUs; "
        "fp32 51 TFLOPS, failed 30 s ago: took 3.1s, bound 2.2s"
    )
    assert describe_checks({}, NOW) == "not challenged yet"
    assert (ago(NOW - 5 * 3600, NOW), ago(NOW + 9, NOW)) == ("5 h ago", "0 s ago")
