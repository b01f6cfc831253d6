"""The runtime interface and the registry of runtimes by name.

A runtime runs one prepared job to completion and reports how it ended; it never raises for
anything the job does (that is a :class:`RunResult`), only :class:`SandboxError` when the job
cannot be run at all (runtime missing, refused, bad job).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from protocol.errors import SandboxError
from provider_node.runtimes.model import PreparedJob, RunResult


@runtime_checkable
class Runtime(Protocol):
    """Runs prepared jobs in some kind of sandbox."""

    name: str

    def unavailable_reason(self) -> str | None:
        """``None`` when this runtime can run jobs on this host, else why not."""
        ...

    async def run(self, job: PreparedJob) -> RunResult:
        """Run ``job`` once under its limits; the outcome says how it ended."""
        ...


RuntimeFactory = Callable[..., Runtime]

_REGISTRY: dict[str, RuntimeFactory] = {}


def register_runtime(name: str, factory: RuntimeFactory) -> None:
    """Make ``factory`` constructible by ``name`` (later registrations replace earlier)."""
    _REGISTRY[name] = factory


def runtime_names() -> list[str]:
    return sorted(_REGISTRY)


def create_runtime(name: str, **options: object) -> Runtime:
    """Construct the runtime registered as ``name`` with keyword ``options``."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(runtime_names()) or "none"
        raise SandboxError(f"unknown runtime {name!r} (known: {known})") from None
    return factory(**options)


def default_runtime_name(order: tuple[str, ...] = ("bwrap", "docker")) -> str:
    """The first runtime in ``order`` that works here; ``process`` is never picked."""
    reasons = []
    for name in order:
        reason = create_runtime(name).unavailable_reason()
        if reason is None:
            return name
        reasons.append(f"{name}: {reason}")
    raise SandboxError("no sandbox runtime works on this host; " + "; ".join(reasons))
