"""The Grafana dashboard (docs/grafana/gpumarket.json) queries only metrics the coordinator
and the provider really export, and shows every figure of the coordinator's history."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from coordinator.metrics import Metrics
from provider_node.metrics import NodeFigures, ProviderMetrics

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "gpumarket.json"
METRIC = re.compile(r"\bgpumarket_[a-z0-9_]+")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


class OneGpu:
    """NVML with one idle GPU, so the provider's NVML families are collected too."""

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=0, memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(used=0)


def exported(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry can expose, whether or not a label set exists yet."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def provider_registry() -> CollectorRegistry:
    def figures() -> NodeFigures:
        return NodeFigures(
            running_jobs=0,
            max_jobs=1,
            free_gpus=1,
            total_gpus=1,
            adverts_published=0,
            finished_jobs={},
        )

    return ProviderMetrics(nvml=OneGpu(), figures=figures).registry


def queries(dashboard: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for panel in dashboard["panels"]:
        out.extend(t["expr"] for t in panel.get("targets", []))
        for inner in panel.get("panels", []):
            out.extend(t["expr"] for t in inner.get("targets", []))
    return out


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = exported(Metrics().registry) | exported(provider_registry())
    used = {name for expr in queries(dashboard) for name in METRIC.findall(expr)}
    assert used, "the dashboard queries no gpumarket metric"
    unknown = sorted(used - known)
    assert not unknown, f"queried but never exported: {unknown}"


def test_the_dashboard_shows_every_history_figure_and_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for expr in queries(dashboard) for name in METRIC.findall(expr)}
    history = {f.name for f in Metrics().registry.collect() if "_coordinator_" in f.name}
    assert history and all(any(u.startswith(name) for u in used) for name in history), sorted(
        n for n in history if not any(u.startswith(n) for u in used)
    )
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource"}


def test_slot_occupancy_and_nvml_utilization_are_kept_apart() -> None:
    """The coordinator's advert-reported figure is job-slot occupancy and is shown as such;
    GPU utilization on the dashboard is NVML's, from the providers."""
    coordinator = exported(Metrics().registry)
    assert "gpumarket_job_slot_occupancy" in coordinator
    assert not any("gpu_utilization" in name for name in coordinator)
    dashboard = json.loads(DASHBOARD.read_text())
    shown: dict[str, list[str]] = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in METRIC.findall(target["expr"]):
                shown.setdefault(name, []).append(f"{panel['title']} / {target['legendFormat']}")
    assert shown["gpumarket_job_slot_occupancy"]
    assert all("occupancy" in s for s in shown["gpumarket_job_slot_occupancy"])
    assert all("NVML" in s for s in shown["gpumarket_gpu_utilization_ratio"])
    for name in ("gpumarket_provider_gpu_healthy", "gpumarket_provider_gpu_failure"):
        assert shown[name], f"{name} is not on the dashboard"
