"""Prometheus metrics of a provider node, in a registry of its own.

Jobs are counted by outcome and timed; the daemon's capacity (running jobs, free GPUs,
adverts, jobs by final phase, GPU health with the reason a GPU failed) is read at scrape
time; GPU utilization is read through NVML at scrape time when ``pynvml`` imports and a
driver answers, and is simply absent otherwise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))


class NvmlCollector(Collector):
    """Per-GPU utilization and memory use, read from NVML on every scrape."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml

    def collect(self) -> Iterator[GaugeMetricFamily]:
        util = GaugeMetricFamily(
            "gpumarket_gpu_utilization_ratio", "GPU busy fraction (NVML)", labels=["gpu"]
        )
        memory = GaugeMetricFamily(
            "gpumarket_gpu_memory_used_bytes", "GPU memory in use (NVML)", labels=["gpu"]
        )
        nvml = self._nvml
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                util.add_metric([str(i)], rates.gpu / 100.0)
                memory.add_metric([str(i)], float(nvml.nvmlDeviceGetMemoryInfo(handle).used))
        except Exception as exc:  # NVML has its own error family; a scrape must not fail
            log.warning("NVML read failed: %s", exc)
        yield util
        yield memory


@dataclass(frozen=True)
class NodeFigures:
    """The daemon's state as one scrape sees it."""

    running_jobs: int
    max_jobs: int
    free_gpus: int
    total_gpus: int
    adverts_published: int
    finished_jobs: dict[str, int]
    """Jobs by the phase they ended in (committed, failed, handed_back, ...)."""
    warm_ready: int = 0
    """Warm sandboxes waiting for a job."""
    sandbox_starts: dict[str, int] = field(default_factory=dict)
    """Jobs started in a warm sandbox and cold (only counted while a warm pool runs)."""
    gpu_devices: tuple[int, ...] = ()
    gpu_failures: dict[int, str] = field(default_factory=dict)
    """GPUs that failed their last health check, with the reason (not offered)."""


class NodeCollector(Collector):
    """Reads the daemon's figures whenever Prometheus scrapes."""

    def __init__(self, figures: Callable[[], NodeFigures]) -> None:
        self._figures = figures

    def describe(self) -> Iterator[Metric]:
        # Registration must not call into the daemon before it has started.
        return self._families(NodeFigures(0, 0, 0, 0, 0, {}))

    def collect(self) -> Iterator[Metric]:
        return self._families(self._figures())

    @staticmethod
    def _families(f: NodeFigures) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "gpumarket_provider_running_jobs", "Jobs running now", f.running_jobs
        )
        yield GaugeMetricFamily("gpumarket_provider_max_jobs", "Concurrent job slots", f.max_jobs)
        yield GaugeMetricFamily(
            "gpumarket_provider_free_gpus", "GPUs not held by a job", f.free_gpus
        )
        yield GaugeMetricFamily("gpumarket_provider_gpus", "GPUs offered", f.total_gpus)
        yield CounterMetricFamily(
            "gpumarket_provider_adverts_published", "Adverts published", f.adverts_published
        )
        finished = CounterMetricFamily(
            "gpumarket_provider_jobs_finished", "Jobs by final phase", labels=["phase"]
        )
        for phase, count in sorted(f.finished_jobs.items()):
            finished.add_metric([phase], count)
        yield finished
        yield GaugeMetricFamily(
            "gpumarket_provider_warm_sandboxes", "Warm sandboxes ready for a job", f.warm_ready
        )
        starts = CounterMetricFamily(
            "gpumarket_provider_sandbox_starts", "Job starts by kind (warm, cold)", labels=["kind"]
        )
        for kind, count in sorted(f.sandbox_starts.items()):
            starts.add_metric([kind], count)
        yield starts
        healthy = GaugeMetricFamily(
            "gpumarket_provider_gpu_healthy",
            "1 while the GPU passes its health checks and is offered, 0 after it failed",
            labels=["gpu"],
        )
        failed = GaugeMetricFamily(
            "gpumarket_provider_gpu_failure",
            "A GPU that failed its last health check, with the reason",
            labels=["gpu", "reason"],
        )
        for device in f.gpu_devices:
            healthy.add_metric([str(device)], 0 if device in f.gpu_failures else 1)
        for device, reason in sorted(f.gpu_failures.items()):
            failed.add_metric([str(device), reason[:200]], 1)
        yield healthy
        yield failed


def _nvml() -> Any | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no NVIDIA driver here
        return None
    return pynvml


class ProviderMetrics:
    """The provider's metrics; pass ``nvml`` to inject a fake NVML module in tests.

    ``figures``, when given, is read on every scrape for the daemon's capacity gauges.
    """

    def __init__(
        self,
        *,
        nvml: Any | None = None,
        use_nvml: bool = True,
        figures: Callable[[], NodeFigures] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter(
            "gpumarket_provider_jobs",
            "Jobs finished, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "gpumarket_provider_job_duration_seconds",
            "Wall time of job runs in the sandbox",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        source = nvml if nvml is not None else (_nvml() if use_nvml else None)
        self.nvml: Any | None = source
        """The NVML module the metrics read (None where there is none)."""
        self.gpu_collector = NvmlCollector(source) if source is not None else None
        if self.gpu_collector is not None:
            self.registry.register(self.gpu_collector)
        if figures is not None:
            self.registry.register(NodeCollector(figures))

    def job_finished(self, outcome: str, duration_s: float) -> None:
        """Record one run; ``outcome`` is a :class:`~provider_node.runtimes.Outcome` value."""
        self.jobs.labels(outcome=outcome).inc()
        self.job_duration.labels(outcome=outcome).observe(duration_s)


class MetricsServer:
    """A running metrics endpoint; ``close()`` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._thread = thread
        self.host = host

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(
    metrics: ProviderMetrics, port: int = 0, host: str = "127.0.0.1"
) -> MetricsServer:
    """Serve ``/metrics`` on ``host:port`` (port 0 picks a free one) in a daemon thread."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    return MetricsServer(server, thread, host)
