"""Prometheus metrics of the coordinator, in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from protocol.lifecycle import JobState

MATCH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge(
            "gpumarket_jobs", "Jobs by lifecycle state", ["state"], registry=self.registry
        )
        self.providers = Gauge(
            "gpumarket_providers", "Providers live in the book", registry=self.registry
        )
        self.utilization = Gauge(
            "gpumarket_gpu_utilization",
            "Mean GPU utilization reported by adverts",
            registry=self.registry,
        )
        self.match_latency = Histogram(
            "gpumarket_match_latency_seconds",
            "Time to match one job",
            buckets=MATCH_BUCKETS,
            registry=self.registry,
        )
        self.settlements = Gauge(
            "gpumarket_settle_transactions",
            "Settle transactions sent (batches count once)",
            registry=self.registry,
        )

    def render(
        self, counts: dict[str, int], providers: int, utilization: float, settle_batches: int
    ) -> bytes:
        for state in JobState:
            self.jobs.labels(state=str(state)).set(counts.get(str(state), 0))
        self.providers.set(providers)
        self.utilization.set(utilization)
        self.settlements.set(settle_batches)
        return generate_latest(self.registry)

    def timer(self) -> Callable[[float], None]:
        return self.match_latency.observe
