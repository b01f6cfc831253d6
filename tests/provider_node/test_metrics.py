"""Provider metrics: counters and histogram per outcome, NVML gauges only when NVML exists."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

from provider_node.metrics import NodeFigures, ProviderMetrics, serve_metrics
from provider_node.runtimes import RunOutcome


class FakeNvml:
    """Two GPUs, 42% and 7% busy."""

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=(42, 7)[handle], memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(used=(1 << 30) * (handle + 1))


def test_jobs_by_outcome_and_duration() -> None:
    metrics = ProviderMetrics(use_nvml=False)
    metrics.job_finished(RunOutcome.OK, 3.0)
    metrics.job_finished(RunOutcome.OK, 20.0)
    metrics.job_finished(RunOutcome.TIMEOUT, 600.0)
    value = metrics.registry.get_sample_value
    assert value("gpumarket_provider_jobs_total", {"outcome": "ok"}) == 2
    assert value("gpumarket_provider_jobs_total", {"outcome": "timeout"}) == 1
    assert value("gpumarket_provider_jobs_total", {"outcome": "oom"}) is None
    assert value("gpumarket_provider_job_duration_seconds_sum", {"outcome": "ok"}) == 23.0
    assert (
        value("gpumarket_provider_job_duration_seconds_bucket", {"outcome": "ok", "le": "5.0"}) == 1
    )
    assert metrics.gpu_collector is None
    assert value("gpumarket_gpu_utilization_ratio", {"gpu": "0"}) is None


def test_gpu_utilization_from_nvml() -> None:
    metrics = ProviderMetrics(nvml=FakeNvml())
    value = metrics.registry.get_sample_value
    assert value("gpumarket_gpu_utilization_ratio", {"gpu": "0"}) == pytest.approx(0.42)
    assert value("gpumarket_gpu_utilization_ratio", {"gpu": "1"}) == pytest.approx(0.07)
    assert value("gpumarket_gpu_memory_used_bytes", {"gpu": "1"}) == 2 << 30


@pytest.mark.timeout(30)
def test_served_on_loopback() -> None:
    metrics = ProviderMetrics(use_nvml=False)
    metrics.job_finished(RunOutcome.OOM, 1.5)
    server = serve_metrics(metrics, port=0)
    try:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        response = httpx.get(server.url, timeout=5)
    finally:
        server.close()
    assert response.status_code == 200
    assert 'gpumarket_provider_jobs_total{outcome="oom"} 1.0' in response.text


def test_node_figures_read_at_scrape_time() -> None:
    state = {"running": 0}

    def figures() -> NodeFigures:
        return NodeFigures(
            running_jobs=state["running"],
            max_jobs=4,
            free_gpus=1,
            total_gpus=2,
            adverts_published=7,
            finished_jobs={"committed": 3, "failed": 1},
            warm_ready=1,
            sandbox_starts={"warm": 5, "cold": 2},
        )

    metrics = ProviderMetrics(use_nvml=False, figures=figures)
    value = metrics.registry.get_sample_value
    assert value("gpumarket_provider_running_jobs") == 0
    state["running"] = 2
    assert value("gpumarket_provider_running_jobs") == 2
    assert value("gpumarket_provider_max_jobs") == 4
    assert value("gpumarket_provider_free_gpus") == 1
    assert value("gpumarket_provider_adverts_published_total") == 7
    assert value("gpumarket_provider_jobs_finished_total", {"phase": "committed"}) == 3
    assert value("gpumarket_provider_jobs_finished_total", {"phase": "failed"}) == 1
    assert value("gpumarket_provider_warm_sandboxes") == 1
    assert value("gpumarket_provider_sandbox_starts_total", {"kind": "warm"}) == 5
    assert value("gpumarket_provider_sandbox_starts_total", {"kind": "cold"}) == 2
