"""What a job needs from a provider: read from its validated spec and its on-chain terms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol.compat import Requires
from protocol.spec import JobSpec, ToleranceCompare, TorchRuntime
from protocol.spec_io import parse_spec

__all__ = ["Requirements", "parse_spec", "requirements_for", "tolerance_of"]


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
    queue: int = 0
    """Jobs a chosen provider may already have waiting beyond its free job slots."""
    packages: tuple[tuple[str, str], ...] = ()
    """Python packages the job imports (name, PEP 440 specifier), torch runtime only."""
    requires: Requires = field(default_factory=Requires)
    """What the GPUs and their driver and CUDA must be (``resources.requires``)."""
    input_bytes: int = 0
    """All of the job's inputs together, as their CIDs' sizes say (0: not known): a provider
    whose advert states a smaller input limit would refuse the job."""
    checkable: bool = False
    """A lone primary of an exact job: only a provider another operator could check (one
    sharing its fingerprint) qualifies, so no provider escapes spot checks."""

    def to_json(self) -> dict[str, Any]:
        return {
            "gpus": self.gpus,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "min_tflops": dict(self.min_tflops),
            "runtime": self.runtime,
            "duration_s": self.duration_s,
            "packages": dict(self.packages),
            "requires": self.requires.to_json() if self.requires else None,
            "input_bytes": self.input_bytes,
        }


def requirements_for(
    spec: JobSpec, *, count: int, price_cap: int, exact: bool, input_bytes: int = 0
) -> Requirements:
    """The matching requirements of a validated spec for ``count`` more providers, whose
    inputs total ``input_bytes`` (0: not known)."""
    resources = spec.resources
    memory = int((resources.gpu_memory_gb or 0) * (1 << 30))
    runtime = spec.runtime
    packages = runtime.packages if isinstance(runtime, TorchRuntime) else {}
    return Requirements(
        count=count,
        price_cap=price_cap,
        gpus=resources.gpus,
        gpu_memory_bytes=memory,
        min_tflops=resources.min_tflops.as_dict(),
        runtime=spec.runtime.kind,
        duration_s=spec.billed_duration_s,
        exact=exact,
        packages=tuple(sorted(packages.items())),
        requires=resources.requires.as_requires() if resources.requires else Requires(),
        input_bytes=input_bytes,
    )


def tolerance_of(spec: JobSpec) -> tuple[float, float] | None:
    """(rtol, atol) of a tolerance job, None for exact comparison."""
    compare = spec.verification.compare
    if isinstance(compare, ToleranceCompare):
        return compare.tolerance.rtol, compare.tolerance.atol
    return None
