"""Vendor datasheet peaks, to report a measurement as a share of what the device promises."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

PEAKS_FILE = Path(__file__).with_name("gpu_peaks.json")


@functools.cache
def _table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PEAKS_FILE.read_text())
    return data


def _normal(name: str) -> str:
    return " ".join(name.lower().replace("-", " ").replace("_", " ").split())


def peak_model(device_name: str) -> str | None:
    """The datasheet entry for a device name as torch reports it, or ``None``."""
    table = _table()
    aliases = {_normal(k): v for k, v in table.get("aliases", {}).items()}
    gpus = {_normal(k): k for k in table["gpus"]}
    wanted = _normal(device_name)
    return aliases.get(wanted) or gpus.get(wanted)


def peak(model: str, metric: str) -> float | None:
    """A datasheet figure (``fp32``... TFLOPS, ``mem_bw_gbs``, ``memory_gb``) for ``model``."""
    value = _table()["gpus"].get(model, {}).get(metric)
    return float(value) if value is not None else None


def share(measured: float | None, model: str | None, metric: str) -> float | None:
    """``measured`` as a fraction of the datasheet peak, when both are known."""
    if measured is None or model is None:
        return None
    reference = peak(model, metric)
    return measured / reference if reference else None
