"""The CPU benchmark, measured for real on tiny sizes, and its per-fingerprint cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from protocol.errors import ConfigError
from provider_node.benchmark import (
    BenchmarkResult,
    BenchmarkSettings,
    HostFingerprint,
    run_benchmark,
)
from provider_node.benchmark import runner as runner_module
from provider_node.benchmark.cache import cache_path
from provider_node.benchmark.devices import fingerprint_of, select_devices
from provider_node.benchmark.model import BENCHMARK_SCHEMA
from provider_node.benchmark.peaks import peak, peak_model, share
from provider_node.benchmark.timing import Timing, best_seconds_per_call
from provider_node.cli import app

TINY = BenchmarkSettings.tiny()
pytestmark = pytest.mark.timeout(120)


def test_cpu_benchmark_measures_and_caches(tmp_path: Path) -> None:
    first = run_benchmark(selection=["cpu"], settings=TINY, cache_dir=tmp_path)
    assert not first.cached
    (cpu,) = first.result.devices
    assert cpu.backend == "cpu" and cpu.memory_bytes > 0
    figures = {m.dtype: m for m in cpu.matmul}
    fp32 = figures["fp32"]
    assert fp32.tflops is not None and fp32.tflops > 0
    assert fp32.n is not None and TINY.min_matmul_n <= fp32.n <= TINY.max_matmul_n
    assert figures["tf32"].tflops is None and figures["tf32"].skipped
    assert figures["fp16"].tflops is None and figures["fp16"].skipped
    assert (figures["bf16"].tflops is None) != (figures["bf16"].skipped is None)
    assert cpu.memory_bandwidth.gbs is not None and cpu.memory_bandwidth.gbs > 0
    assert cpu.host_to_device.skipped and cpu.host_to_device.gbs is None
    assert cpu.peak_model is None and fp32.peak_share is None
    assert first.result.fingerprint.torch == torch.__version__

    path = cache_path(tmp_path, first.result.fingerprint)
    assert first.cache_file == path and path.is_file()
    assert BenchmarkResult.model_validate_json(path.read_text()) == first.result
    assert len({first.result, first.result.model_copy()}) == 1  # frozen and hashable

    again = run_benchmark(selection=["cpu"], settings=TINY, cache_dir=tmp_path)
    assert again.cached and again.result == first.result


def test_cache_is_invalidated_by_fingerprint_settings_and_flag(tmp_path: Path) -> None:
    base = run_benchmark(selection=["cpu"], settings=TINY, cache_dir=tmp_path)
    upgraded = base.result.fingerprint.model_copy(update={"driver": "999.1", "torch": "9.9"})
    assert upgraded.key() != base.result.fingerprint.key()

    moved = run_benchmark(
        selection=["cpu"], settings=TINY, cache_dir=tmp_path, fingerprint=upgraded
    )
    assert not moved.cached and moved.result.fingerprint == upgraded
    assert moved.result.measured_at > base.result.measured_at
    assert len(list(tmp_path.glob("benchmark-*.json"))) == 2
    hit = run_benchmark(selection=["cpu"], settings=TINY, cache_dir=tmp_path, fingerprint=upgraded)
    assert hit.cached and hit.result == moved.result

    other_settings = TINY.model_copy(update={"repeats": 3})
    assert not run_benchmark(selection=["cpu"], settings=other_settings, cache_dir=tmp_path).cached
    assert not run_benchmark(
        selection=["cpu"], settings=other_settings, cache_dir=tmp_path, use_cache=False
    ).cached

    cache_path(tmp_path, base.result.fingerprint).write_text("{not json")
    assert not run_benchmark(selection=["cpu"], settings=TINY, cache_dir=tmp_path).cached


def test_fingerprint_and_device_selection() -> None:
    cpu = select_devices(["cpu"])
    assert [d.device for d in cpu] == ["cpu"]
    fp = fingerprint_of(cpu)
    assert fp == fingerprint_of(cpu) and fp.key() == fingerprint_of(cpu).key()
    assert fp.cuda is None and fp.rocm is None and fp.device_models == (cpu[0].name,)
    changed = HostFingerprint(device_models=fp.device_models, torch=fp.torch, cuda="12.4")
    assert changed.key() != fp.key()
    if not torch.cuda.is_available():
        assert [d.device for d in select_devices(None)] == ["cpu"]
    with pytest.raises(ConfigError, match="cuda:42"):
        select_devices(["cuda:42"])


def test_vendor_peaks_match_torch_device_names() -> None:
    assert peak_model("NVIDIA H100 80GB HBM3") == "NVIDIA H100 SXM5 80GB"
    assert peak_model("NVIDIA H200") == "NVIDIA H200 SXM 141GB"
    assert peak_model("NVIDIA A100-SXM4-80GB") == "NVIDIA A100 SXM4 80GB"
    assert peak_model("nvidia l40s") == "NVIDIA L40S"
    assert peak_model("AMD EPYC") is None
    assert peak("NVIDIA H100 SXM5 80GB", "bf16") == pytest.approx(989.4)
    assert share(494.7, "NVIDIA H100 SXM5 80GB", "bf16") == pytest.approx(0.5)
    assert share(1.0, None, "bf16") is None
    assert share(None, "NVIDIA L4", "fp32") is None


class FakeDevice:
    """A device on a fake clock: a call costs ``cost(call index, now)`` seconds, a sync
    ``sync_s``."""

    def __init__(self, cost: Callable[[int, float], float], sync_s: float = 0.0) -> None:
        self.cost = cost
        self.sync_s = sync_s
        self.now = 0.0
        self.calls = 0
        self.syncs = 0

    def clock(self) -> float:
        return self.now

    def call(self) -> None:
        self.now += self.cost(self.calls, self.now)
        self.calls += 1

    def sync(self) -> None:
        self.now += self.sync_s
        self.syncs += 1

    def time(self, repeats: int = 5, min_rep_s: float = 0.1, max_warmup_s: float = 10.0) -> Timing:
        return best_seconds_per_call(
            self.call,
            self.sync,
            repeats=repeats,
            min_rep_s=min_rep_s,
            max_warmup_s=max_warmup_s,
            stable_rtol=0.01,
            clock=self.clock,
        )


def test_warmup_runs_until_two_windows_agree_then_takes_the_best_window() -> None:
    # Cold calls cost 3 ms, halving their distance to the steady 1 ms every 40 calls.
    device = FakeDevice(lambda i, now: 1e-3 + 2e-3 * 0.5 ** (i // 40))
    timing = device.time()
    assert timing.seconds == pytest.approx(1e-3, rel=1e-3)
    assert timing.seconds == min(timing.windows) and len(timing.windows) == 5
    # Windows of 0.1 s hold about 100 steady calls; it took several for two to agree
    # within 1%, and the warm-up stopped there, long before its 10 s bound.
    assert 100 <= timing.calls <= 101
    assert timing.warmup_windows >= 4
    assert device.now < 2.0


def test_a_disturbed_window_does_not_count_and_syncs_are_per_window() -> None:
    steady = 2e-3
    # Between 0.25 s and 0.40 s of the run (two of the four timed windows), calls cost ten
    # times as much: a median would take one of those.
    device = FakeDevice(lambda i, now: steady * (10 if 0.25 <= now < 0.40 else 1), sync_s=1e-3)
    timing = device.time(repeats=4)
    assert max(timing.windows) > 1.5 * min(timing.windows)
    # A window of 50 calls holds one sync's wait (1 ms), not one a call.
    assert timing.calls == 50
    assert timing.seconds == pytest.approx(steady + 1e-3 / 50)
    # The set-up call's sync, then two a window: sizing, warm-up and timed windows.
    assert device.syncs == 1 + 2 * (1 + timing.warmup_windows + 4)


def test_warmup_stops_at_its_bound_when_never_stable() -> None:
    # Every 10 calls are 5% cheaper than the 10 before (no two windows agree within 1%)
    # until a floor reached after about 2 s.
    device = FakeDevice(lambda i, now: max(1e-3, 1e-2 * 0.95 ** (i // 10)))
    timing = device.time(max_warmup_s=0.5, min_rep_s=0.05, repeats=2)
    before_timed = device.now - sum(timing.windows) * timing.calls
    # Set-up and sizing (20 ms), the bound, at most one window (and a call) past it.
    assert 0.5 < before_timed < 0.02 + 0.5 + 0.05 + 0.01 + 1e-9
    assert timing.seconds == min(timing.windows)


def test_an_old_way_of_measuring_is_not_taken_from_the_cache(tmp_path: Path) -> None:
    fresh = run_benchmark(selection=["cpu"], settings=TINY, cache_dir=tmp_path)
    assert fresh.cache_file is not None and fresh.result.schema_version == BENCHMARK_SCHEMA
    old = fresh.result.model_copy(update={"schema_version": BENCHMARK_SCHEMA - 1})
    fresh.cache_file.write_text(old.model_dump_json())
    again = run_benchmark(selection=["cpu"], settings=TINY, cache_dir=tmp_path)
    assert not again.cached and again.result.schema_version == BENCHMARK_SCHEMA


def test_cli_benchmark_json_then_cached_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "default_settings", lambda devices: TINY)
    cli = CliRunner()
    args = ["benchmark", "--device", "cpu", "--cache-dir", str(tmp_path)]
    fresh = cli.invoke(app, [*args, "--json"])
    assert fresh.exit_code == 0, fresh.output
    payload = json.loads(fresh.output.strip().splitlines()[-1])
    assert payload["cached"] is False
    assert payload["devices"][0]["device"] == "cpu"
    table = cli.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "matmul fp32" in table.output and "(cached)" in table.output
    again = cli.invoke(app, [*args, "--json", "--no-cache"])
    assert json.loads(again.output.strip().splitlines()[-1])["cached"] is False
    bad = cli.invoke(app, ["benchmark", "--device", "tpu:0", "--cache-dir", str(tmp_path)])
    assert bad.exit_code == 1
