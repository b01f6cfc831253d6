"""Sandbox runtimes: run a prepared job under limits and report how it ended.

``create_runtime("bwrap")`` (the default where it works), ``"docker"`` or ``"podman"``, or
``"process"`` (no isolation; needs ``unsafe=True``).
"""

from provider_node.runtimes import bwrap, container, process
from provider_node.runtimes.base import (
    Runtime,
    create_runtime,
    default_runtime_name,
    register_runtime,
    runtime_names,
)
from provider_node.runtimes.model import (
    JOB_ROOT,
    CommandEntrypoint,
    Entrypoint,
    OutputSink,
    PreparedJob,
    RunLimits,
    RunOutcome,
    RunResult,
    TorchEntrypoint,
)

BwrapRuntime = bwrap.BwrapRuntime
EngineRuntime = container.EngineRuntime
CONTAINER_RUNTIMES = container.CONTAINER_RUNTIMES
ProcessRuntime = process.ProcessRuntime

__all__ = [
    "CONTAINER_RUNTIMES",
    "JOB_ROOT",
    "BwrapRuntime",
    "CommandEntrypoint",
    "EngineRuntime",
    "Entrypoint",
    "OutputSink",
    "PreparedJob",
    "ProcessRuntime",
    "RunLimits",
    "RunOutcome",
    "RunResult",
    "Runtime",
    "TorchEntrypoint",
    "create_runtime",
    "default_runtime_name",
    "register_runtime",
    "runtime_names",
]
