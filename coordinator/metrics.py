"""Prometheus metrics of the coordinator, in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from coordinator.store import JobRecord
from coordinator.store.history import HistoryRow, MarketHour, PriceHour, ProviderHour, RequesterHour
from protocol.lifecycle import JobState, Phase

MATCH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
PHASE_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
FAILURE_CAUSES = ("timeout", "fault", "job", "withheld", "slashed")


class HistoryMetrics:
    """The hourly history's figures as Prometheus counters (since this process started;
    ``increase(...[1h])`` gives the hour), fed by :class:`coordinator.history.HistoryRecorder`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        p = "gpumarket_coordinator_"
        self.gpu_offered = counter(p + "gpu_offered_seconds", "GPU-seconds offered", ["provider"])
        self.gpu_sold = counter(
            p + "gpu_sold_seconds", "GPU-seconds sold (seat runtime)", ["provider"]
        )
        self.slot_offered = counter(
            p + "slot_offered_seconds", "Job-slot-seconds offered", ["provider"]
        )
        self.slot_sold = counter(p + "slot_sold_seconds", "Job-slot-seconds sold", ["provider"])
        self.seats = counter(p + "seats_delivered", "Seats that delivered a result", ["provider"])
        self.failures = counter(
            p + "seat_failures", "Seats that failed, by cause", ["provider", "cause"]
        )
        self.earnings = counter(
            p + "provider_earnings", "Paid to providers (token base units)", ["provider"]
        )
        self.requester_jobs = counter(
            p + "requester_jobs", "Jobs ended, by requester", ["requester"]
        )
        self.spend = counter(
            p + "requester_spend", "Seat pay plus fee (token base units)", ["requester"]
        )
        self.refunds = counter(p + "requester_refunds", "Refunds (token base units)", ["requester"])
        self.jobs_ended = counter(p + "jobs_ended", "Jobs ended, by final state", ["state"])
        self.queue_wait = Histogram(
            p + "queue_wait_seconds",
            "Queued to assign transaction mined",
            buckets=PHASE_BUCKETS,
            registry=registry,
        )
        self.phase = Histogram(
            p + "phase_seconds",
            "Time from queued to each phase of a job",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=registry,
        )
        self.price = Gauge(
            p + "price_per_tflop_hour",
            "Latest price per verified TFLOP-hour (token base units), mean over providers",
            ["gpu_model", "dtype"],
            registry=registry,
        )

    def sampled(self, rows: Sequence[HistoryRow]) -> None:
        prices: dict[tuple[str, str], list[float]] = {}
        for row in rows:
            if isinstance(row, ProviderHour):
                self.gpu_offered.labels(row.address).inc(row.gpu_offered_s)
                self.slot_offered.labels(row.address).inc(row.slot_offered_s)
            elif isinstance(row, PriceHour):
                prices.setdefault((row.gpu_model, row.dtype), []).append(row.price_sum)
        for (model, dtype), values in prices.items():
            self.price.labels(model, dtype).set(sum(values) / len(values))

    def job_recorded(
        self, job: JobRecord, rows: Sequence[HistoryRow], when: Mapping[Phase, float]
    ) -> None:
        self.jobs_ended.labels(str(job.state)).inc()
        for row in rows:
            if isinstance(row, ProviderHour):
                who = row.address
                self.gpu_sold.labels(who).inc(row.gpu_sold_s)
                self.slot_sold.labels(who).inc(row.slot_sold_s)
                self.seats.labels(who).inc(row.jobs)
                self.earnings.labels(who).inc(row.earnings)
                counts = (row.failed_timeout, row.failed_fault, row.failed_job, row.withheld)
                for cause, n in zip(FAILURE_CAUSES, (*counts, row.slashed), strict=True):
                    if n:
                        self.failures.labels(who, cause).inc(n)
            elif isinstance(row, RequesterHour):
                self.requester_jobs.labels(row.address).inc(row.jobs)
                self.spend.labels(row.address).inc(row.spend)
                self.refunds.labels(row.address).inc(row.refunds)
            elif isinstance(row, MarketHour) and row.queue_waits:
                self.queue_wait.observe(row.queue_wait_s)
        start = when.get(Phase.QUEUED)
        if start is not None:
            for phase, at in when.items():
                if phase is not Phase.QUEUED:
                    self.phase.labels(str(phase)).observe(max(0.0, at - start))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge(
            "gpumarket_jobs", "Jobs by lifecycle state", ["state"], registry=self.registry
        )
        self.providers = Gauge(
            "gpumarket_providers", "Providers live in the book", registry=self.registry
        )
        self.slot_occupancy = Gauge(
            "gpumarket_job_slot_occupancy",
            "Mean job-slot occupancy (running / concurrent jobs) the adverts report, "
            "weighted by GPU count",
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
        self.history = HistoryMetrics(self.registry)

    def render(
        self, counts: dict[str, int], providers: int, slot_occupancy: float, settle_batches: int
    ) -> bytes:
        for state in JobState:
            self.jobs.labels(state=str(state)).set(counts.get(str(state), 0))
        self.providers.set(providers)
        self.slot_occupancy.set(slot_occupancy)
        self.settlements.set(settle_batches)
        return generate_latest(self.registry)

    def timer(self) -> Callable[[float], None]:
        return self.match_latency.observe
