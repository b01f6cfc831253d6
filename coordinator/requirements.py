"""What a job needs from a provider, read from its spec and its on-chain terms.

The spec is YAML or JSON (see DESIGN "A job spec"); only the fields that matching needs are
read here, and each is validated with a ``SpecError`` naming its path. Durations accept
seconds or ``10m``/``2h``/``30s`` text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from coordinator.columns import DTYPE_INDEX, RUNTIME_BITS
from protocol.errors import SpecError
from protocol.registry import MAX_GPUS_PER_NODE, MAX_SPEC_BYTES

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Requirements:
    """Everything the matcher filters on, for ``count`` providers."""

    count: int
    price_cap: int
    gpus: int = 1
    gpu_memory_bytes: int = 0
    min_tflops: Mapping[str, float] = field(default_factory=dict)
    runtime: str = "torch"
    duration_s: int = 600
    exact: bool = True
    exclude_addresses: frozenset[str] = frozenset()
    exclude_groups: frozenset[int] = frozenset()
    fingerprint: str | None = None
    """Exact jobs joining an existing assignment must match its fingerprint."""

    def to_json(self) -> dict[str, Any]:
        return {
            "gpus": self.gpus,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "min_tflops": dict(self.min_tflops),
            "runtime": self.runtime,
            "duration_s": self.duration_s,
        }


def parse_duration(value: object, path: str) -> int:
    if isinstance(value, bool):
        raise SpecError(path, "must be a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise SpecError(path, f"not a duration: {value!r}")
    if not 0 < seconds <= 90 * 86400:
        raise SpecError(path, "must be between 1 s and 90 days")
    return int(seconds)


def parse_size(value: object, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        unit = m.group(2).upper().rstrip("B").rstrip("I")
        scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]
        return int(float(m.group(1)) * scale)
    raise SpecError(path, f"not a size: {value!r}")


def load_spec(data: bytes) -> dict[str, Any]:
    """Parse spec bytes (JSON or YAML) into a mapping."""
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError("", f"spec is {len(data)} bytes, more than {MAX_SPEC_BYTES}")
    try:
        text = data.decode("utf-8")
        obj = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise SpecError("", f"spec is neither JSON nor YAML: {exc}") from exc
    if not isinstance(obj, dict):
        raise SpecError("", "spec must be a mapping")
    return obj


def _mapping(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key) or {}
    if not isinstance(value, Mapping):
        raise SpecError(key, "must be a mapping")
    return value


def requirements_from_spec(
    spec: Mapping[str, Any], *, count: int, price_cap: int, exact: bool, default_duration_s: int
) -> Requirements:
    """The matching requirements of a parsed spec."""
    resources = _mapping(spec, "resources")
    gpus = resources.get("gpus", 1)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or not 0 <= gpus <= MAX_GPUS_PER_NODE:
        raise SpecError("resources.gpus", f"must be an integer from 0 to {MAX_GPUS_PER_NODE}")
    memory = 0
    if "gpu_memory_gb" in resources:
        gb = resources["gpu_memory_gb"]
        if not isinstance(gb, int | float) or isinstance(gb, bool) or gb < 0:
            raise SpecError("resources.gpu_memory_gb", "must be a non-negative number")
        memory = int(gb * (1 << 30))
    tflops: dict[str, float] = {}
    for dtype, value in _mapping(resources, "min_tflops").items():
        if dtype not in DTYPE_INDEX:
            raise SpecError(f"resources.min_tflops.{dtype}", "unknown dtype")
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise SpecError(f"resources.min_tflops.{dtype}", "must be a non-negative number")
        tflops[dtype] = float(value)
    runtime = _mapping(spec, "runtime").get("kind", "torch")
    if runtime not in RUNTIME_BITS:
        raise SpecError("runtime.kind", f"unknown runtime {runtime!r}")
    timeout = spec.get("timeout")
    duration = default_duration_s if timeout is None else parse_duration(timeout, "timeout")
    return Requirements(
        count=count,
        price_cap=price_cap,
        gpus=gpus,
        gpu_memory_bytes=memory,
        min_tflops=tflops,
        runtime=str(runtime),
        duration_s=duration,
        exact=exact,
    )
