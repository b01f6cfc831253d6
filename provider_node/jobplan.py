"""What a provider needs to know from a job spec to run it: a :class:`JobPlan`.

The spec is fetched by CID and validated by :mod:`protocol.spec_io`; the plan keeps only
the fields that shape a run (runtime and entrypoint, inputs, GPU count, timeout, output
bound) and is checked against the assignment's input CIDs. Problems raise
:class:`protocol.errors.SpecError`, which the worker reports as a ``bad_input`` failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from protocol.errors import SpecError
from protocol.ids import Cid
from protocol.ipfs.cid import normalize_cid
from protocol.spec import DEFAULT_CPUS, ContainerRuntime, JobSpec
from protocol.spec_io import parse_spec


@dataclass(frozen=True)
class JobPlan:
    """The run-shaping part of a job spec."""

    runtime: str
    """``torch`` or ``container``."""
    entrypoint: str | None
    """Script of a torch job, relative to one of its inputs (or ``inputs/<name>/...``)."""
    args: tuple[str, ...]
    image: str | None
    command: tuple[str, ...]
    inputs: tuple[str, ...]
    gpus: int
    timeout_s: float
    max_output_bytes: int
    packages: tuple[tuple[str, str], ...] = ()
    """Python packages a torch job imports (name, PEP 440 specifier)."""
    cpus: float = DEFAULT_CPUS
    """CPUs' worth of time the job may use (its cgroup's quota)."""
    memory_bytes: int | None = None
    """Host memory the spec asks to be held to; None: the provider's per-job limit."""


def plan_of(spec: JobSpec) -> JobPlan:
    runtime = spec.runtime
    args: tuple[str, ...]
    packages: tuple[tuple[str, str], ...] = ()
    if isinstance(runtime, ContainerRuntime):
        kind, entry, args = "container", None, ()
        image, command = runtime.image, tuple(runtime.command)
    else:
        kind, entry, args = "torch", runtime.entrypoint, tuple(runtime.args)
        image, command = None, ()
        packages = tuple(sorted(runtime.packages.items()))
    return JobPlan(
        runtime=kind,
        entrypoint=entry,
        args=args,
        image=image,
        command=command,
        inputs=tuple(item.name for item in spec.inputs),
        gpus=spec.resources.gpus,
        timeout_s=float(spec.timeout),
        max_output_bytes=int(spec.max_output),
        packages=packages,
        cpus=spec.resources.cpus,
        memory_bytes=(
            None if spec.resources.memory_gb is None else int(spec.resources.memory_gb * 2**30)
        ),
    )


def parse_plan(data: bytes, input_cids: Mapping[str, Cid]) -> JobPlan:
    """Validate spec bytes and check them against the assignment's ``input_cids``.

    Every input the spec names needs a CID in the assignment, and an input the spec gives
    by CID must be assigned that same CID (so a coordinator cannot swap a requester's data).
    """
    spec = parse_spec(data)
    given = {name: normalize_cid(cid) for name, cid in input_cids.items()}
    for item in spec.inputs:
        assigned = given.get(item.name)
        if assigned is None:
            raise SpecError(f"inputs.{item.name}", "the assignment carries no CID for it")
        if item.cid is not None and normalize_cid(item.cid) != assigned:
            raise SpecError(
                f"inputs.{item.name}", f"assigned {assigned} but the spec names {item.cid}"
            )
    extra = sorted(set(given) - {item.name for item in spec.inputs})
    if extra:
        raise SpecError("inputs", f"the assignment names inputs the spec lacks: {extra}")
    return plan_of(spec)
