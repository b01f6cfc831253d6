"""GPU health: a GPU that fails its check is no longer handed out or advertised, with the
reason in the metrics and the log; it comes back when it passes again. The probe is
injected; the test kernel itself really runs here (and fails truthfully without a GPU)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import torch
import trio

from devnet.ipfs import IpfsNode
from protocol.identity import import_private_key
from protocol.messages.advert import Benchmark, Fingerprint, GpuInfo
from provider_node import gpuhealth
from provider_node.advertiser import NothingToOffer
from provider_node.daemon import ProviderNode
from provider_node.gpuhealth import GpuHealth, kernel_check, nvml_check, nvml_utilization
from provider_node.gpus import GpuPool
from provider_node.metrics import NodeFigures, ProviderMetrics
from provider_node.profile import HostOffer
from provider_node.settings import ProviderSettings
from tests.contracts.harness import Market


@dataclass
class Breakable:
    """A probe whose GPUs fail on demand; records what it was asked."""

    broken: dict[int, str] = field(default_factory=dict)
    asked_idle: list[tuple[int, ...]] = field(default_factory=list)

    def __call__(self, devices: Sequence[int], idle: Sequence[int]) -> dict[int, str | None]:
        self.asked_idle.append(tuple(idle))
        return {d: self.broken.get(d) for d in devices}


def test_a_failed_gpu_is_not_handed_out_until_it_passes_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = GpuPool((0, 1, 2))
    probe = Breakable()
    health = GpuHealth(pool, probe, period_s=60)
    assert health.check() == {} and pool.free == 3

    probe.broken[1] = "NVML: GPU is lost"
    with caplog.at_level(logging.WARNING, logger=gpuhealth.log.name):
        gpuhealth.log.disabled = False
        assert health.check() == {1: "NVML: GPU is lost"}
    assert "GPU 1 failed its health check" in caplog.text and "GPU is lost" in caplog.text
    assert pool.free == 2 and pool.free_devices == (0, 2) and pool.healthy_devices == (0, 2)
    assert pool.acquire(3) is None
    assert pool.acquire(2) == (0, 2)
    pool.release((0, 2))

    del probe.broken[1]
    health.check()
    assert health.failures == {} and pool.free_devices == (0, 1, 2)


def test_gpus_held_by_jobs_get_no_test_kernel() -> None:
    pool = GpuPool((0, 1))
    probe = Breakable()
    held = pool.acquire(1)
    assert held == (0,)
    GpuHealth(pool, probe, period_s=60).check()
    assert probe.asked_idle == [(1,)]


def test_a_failed_gpu_that_a_job_releases_stays_out() -> None:
    pool = GpuPool((0, 1))
    taken = pool.acquire(2)
    assert taken == (0, 1)
    GpuHealth(pool, Breakable({0: "the test kernel failed: boom"}), period_s=60).check()
    pool.release(taken)
    assert pool.free_devices == (1,)


def test_the_test_kernel_really_runs_and_tells_the_truth() -> None:
    found = kernel_check([0])
    print(found)
    if torch.cuda.is_available():
        assert found == {0: None}
    else:
        reason = found[0]
        assert reason is not None and reason.startswith("the test kernel failed:")


def test_a_kernel_process_that_dies_fails_every_gpu_it_was_to_check() -> None:
    found = kernel_check([0, 1], python="/bin/false")
    assert set(found) == {0, 1}
    assert all(r is not None and "process failed" in r for r in found.values())


class FlakyNvml:
    """NVML with two GPUs whose second one is lost; 30% and 70% busy."""

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        if handle == 1:
            raise RuntimeError("GPU is lost")
        return SimpleNamespace(used=0)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=(30, 70)[handle], memory=0)


def test_nvml_check_and_utilization() -> None:
    assert nvml_check(FlakyNvml(), [0, 1]) == {0: None, 1: "NVML: GPU is lost"}
    assert nvml_utilization(FlakyNvml(), [0, 1]) == pytest.approx(0.5)
    assert nvml_utilization(FlakyNvml(), [0]) == pytest.approx(0.3)
    assert nvml_utilization(None, [0]) is None


def test_health_is_exported_in_the_metrics() -> None:
    figures = NodeFigures(
        running_jobs=0,
        max_jobs=1,
        free_gpus=1,
        total_gpus=2,
        adverts_published=0,
        finished_jobs={},
        gpu_devices=(0, 1),
        gpu_failures={1: "NVML: GPU is lost"},
    )
    registry = ProviderMetrics(use_nvml=False, figures=lambda: figures).registry
    sample = registry.get_sample_value
    assert sample("gpumarket_provider_gpu_healthy", {"gpu": "0"}) == 1
    assert sample("gpumarket_provider_gpu_healthy", {"gpu": "1"}) == 0
    assert sample("gpumarket_provider_gpu_failure", {"gpu": "1", "reason": "NVML: GPU is lost"})
    assert sample("gpumarket_provider_gpu_failure", {"gpu": "0", "reason": ""}) is None


def two_gpu_offer() -> HostOffer:
    """What a benchmark of two H200s would yield (this machine has none: the jobs the
    daemon would accept are never sent here)."""
    return HostOffer(
        gpus=(GpuInfo(name="NVIDIA H200", memory_bytes=141 << 30),) * 2,
        gpu_indices=(0, 1),
        benchmark=Benchmark(tflops={"bf16": 700.0}, memory_bandwidth_gbps=4000.0),
        fingerprint=Fingerprint(
            backend="cuda", gpu_model="NVIDIA H200", driver="580.159", cuda="13.0", torch="2.11.0"
        ),
        device="cuda:0",
    )


@pytest.mark.integration
async def test_the_daemon_stops_advertising_a_gpu_that_fails(
    real: Market, deployed: dict[str, str], ipfs: IpfsNode, tmp_path: Path
) -> None:
    keystore = tmp_path / "provider.keystore.json"
    import_private_key(keystore, real.accounts["provider2"].key.hex(), "pw", scrypt_n=2**4)
    settings = ProviderSettings(
        rpc_url=real.rpc_url,
        market_address=deployed["market"],
        registry_address=deployed["registry"],
        token_address=deployed["token"],
        keystore=keystore,
        password="pw",  # type: ignore[arg-type]
        ipfs_api=ipfs.api_url,
        work_dir=tmp_path / "work",
        runtime="bwrap",
        stake=Decimal("100"),
        metrics_port=0,
        warm_sandboxes=0,
        gpu_check_period_s=5,
        max_input_bytes=3 << 30,
    )
    probe = Breakable()
    async with ProviderNode(settings, offer=two_gpu_offer(), gpu_probe=probe) as node:
        assert node.health is not None and node.advertiser is not None
        with trio.fail_after(30):
            while node.health.checks == 0:
                await trio.sleep(0.05)
        advert = node.advertiser.build()
        assert len(advert.gpus) == 2 and advert.free_gpus == 2
        assert advert.max_input_bytes == 3 << 30  # PROVIDER_MAX_INPUT_BYTES, stated

        probe.broken[1] = "the test kernel failed: CUDA error: an illegal memory access"
        node.health.check()  # what the next period would do
        advert = node.advertiser.build()
        assert len(advert.gpus) == 1 and advert.free_gpus == 1
        assert advert.utilization == 0.0 and advert.gpu_utilization is None  # no NVML here
        assert node.metrics_url is not None
        text = httpx.get(node.metrics_url, timeout=10).text
        lines = [line for line in text.splitlines() if line.startswith("gpumarket_provider_gpu")]
        print("\n".join(lines))
        assert 'gpumarket_provider_gpu_healthy{gpu="1"} 0.0' in lines
        assert 'gpumarket_provider_gpu_healthy{gpu="0"} 1.0' in lines
        assert any("illegal memory access" in line for line in lines)

        probe.broken[0] = "NVML: GPU is lost"
        node.health.check()
        with pytest.raises(NothingToOffer, match="every GPU failed"):
            node.advertiser.build()
        assert json.loads(settings.ready_file.read_text())["metrics_url"] == node.metrics_url
