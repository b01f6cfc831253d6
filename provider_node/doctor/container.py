"""The container runtime: which engine answers, whether it can hand GPUs to containers,
and whether the configured runtime can run a job here."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from provider_node.doctor.probes import run_command
from provider_node.doctor.report import Check, CheckStatus
from provider_node.runtimes.container import CONTAINER_RUNTIMES


@dataclass(frozen=True)
class ContainerFacts:
    """The container engine found, if any, and whether it can hand GPUs to containers."""

    engine: str | None
    answers: bool = False
    detail: str = ""
    gpu_access: bool = False
    """An NVIDIA container runtime is registered or a CDI spec for ``nvidia.com/gpu`` exists."""


CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))


def cdi_has_nvidia(dirs: Sequence[Path] = CDI_DIRS) -> bool:
    for directory in dirs:
        for spec in sorted(directory.glob("*"))[:64] if directory.is_dir() else []:
            try:
                if "nvidia.com/gpu" in spec.read_text(errors="replace")[: 1 << 20]:
                    return True
            except OSError:
                continue
    return False


def probe_container() -> ContainerFacts:
    """docker, else podman: the first whose engine answers, else the first installed."""
    found: ContainerFacts | None = None
    for engine in ("docker", "podman"):
        binary = shutil.which(engine)
        if binary is None:
            continue
        code, out, err = run_command([binary, "info", "--format", "{{json .}}"], timeout=10)
        if code != 0:
            found = found or ContainerFacts(engine, False, (err or out).strip()[:300])
            continue
        gpu = cdi_has_nvidia()
        with contextlib.suppress(ValueError, AttributeError):
            runtimes = json.loads(out).get("Runtimes") or {}
            gpu = gpu or any("nvidia" in str(name) for name in runtimes)
        return ContainerFacts(engine, answers=True, gpu_access=gpu)
    return found or ContainerFacts(engine=None)


def probe_container_runtime(runtime: str) -> str | None:
    """Why the container runtime ``runtime`` (docker or podman, with the image and OCI
    runtime the environment configures) cannot run here: its own readiness probe."""
    from provider_node.runtimes import create_runtime

    return create_runtime(
        runtime,
        torch_image=os.environ.get("PROVIDER_CONTAINER_TORCH_IMAGE") or None,
        oci_runtime=os.environ.get("PROVIDER_CONTAINER_OCI_RUNTIME") or None,
    ).unavailable_reason()


def check_container(
    facts: ContainerFacts, *, runtime: str, gpus: int, runtime_reason: str | None = None
) -> Check:
    """``runtime_reason``: why the container runtime itself cannot run (its own probe),
    which decides for ``PROVIDER_RUNTIME=docker`` or ``podman`` whatever other engine
    answers."""
    must = runtime in CONTAINER_RUNTIMES
    name = "container"
    bad = CheckStatus.FAIL if must else CheckStatus.WARN
    if must and runtime_reason is not None:
        return Check(
            name,
            CheckStatus.FAIL,
            True,
            f"PROVIDER_RUNTIME={runtime} cannot run here: {runtime_reason}",
            f"install {runtime} and make its engine run a container (what failed is named "
            "above); podman needs `apt-get install podman runc catatonit`, docker a running "
            "engine (`systemctl start docker`)",
        )
    if facts.engine is None:
        if not must:
            return Check(
                name,
                CheckStatus.OK,
                False,
                f"no docker or podman (not used: PROVIDER_RUNTIME={runtime})",
            )
        return Check(
            name,
            CheckStatus.FAIL,
            True,
            "neither docker nor podman is installed",
            "`apt-get install docker.io` (or podman)",
        )
    if not facts.answers:
        return Check(
            name,
            bad,
            must,
            f"{facts.engine} is installed but its engine does not answer: {facts.detail}",
            f"start it: `systemctl start {facts.engine}`",
        )
    if gpus and not facts.gpu_access:
        return Check(
            name,
            bad,
            must,
            f"{facts.engine} answers but has no NVIDIA runtime or CDI spec for nvidia.com/gpu",
            "install nvidia-container-toolkit, then `nvidia-ctk runtime configure "
            f"--runtime={facts.engine}` and restart it (or `nvidia-ctk cdi generate "
            "--output=/etc/cdi/nvidia.yaml`)",
        )
    gpu = " with GPU access" if gpus else ""
    return Check(name, CheckStatus.OK, must, f"{facts.engine} answers{gpu}")
