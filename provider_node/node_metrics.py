"""The daemon's Prometheus endpoint: job, advert and capacity gauges read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


@dataclass(frozen=True)
class NodeFigures:
    running_jobs: int
    max_jobs: int
    free_gpus: int
    total_gpus: int
    adverts_published: int
    finished_jobs: dict[str, int]


class NodeCollector(Collector):
    """Reads the daemon's figures whenever Prometheus scrapes."""

    def __init__(self, figures: Callable[[], NodeFigures]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        f = self._figures()
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


def serve_metrics(
    host: str, port: int, figures: Callable[[], NodeFigures]
) -> tuple[WSGIServer, str]:
    """Serve ``/metrics`` in a background thread; returns the server and its URL."""
    registry = CollectorRegistry()
    registry.register(NodeCollector(figures))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    bound_port = server.server_address[1]
    return server, f"http://{host}:{bound_port}/metrics"
