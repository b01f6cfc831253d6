"""The bubblewrap sandbox and the job cgroups that bound it: probed by doing (a sandbox
runs ``true``, a job cgroup is created and removed), then judged."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provider_node.doctor.probes import run_command
from provider_node.doctor.report import Check, CheckStatus

UNIT_FILE = "deploy/gpumarket-provider.service"
"""The systemd unit shipped with the project (it delegates the cgroup subtree)."""


@dataclass(frozen=True)
class CgroupFacts:
    """Which cgroup hierarchy offers the job limits, and where this process sits."""

    version: int | None
    """2: the unified hierarchy has memory and pids; 1: v1 hierarchies do; None: neither."""
    own_path: str
    under_systemd_unit: str | None = None
    """The systemd unit (``*.service``/``*.scope``) whose cgroup holds this process."""


def probe_cgroups() -> CgroupFacts:
    from provider_node.runtimes import cgroups

    try:
        mounts, own = cgroups._mounts(), cgroups._own_paths()
    except OSError:
        return CgroupFacts(version=None, own_path="?")
    version: int | None = None
    if any(m.fstype == "cgroup2" and {"memory", "pids"} <= m.controllers for m in mounts):
        version = 2
    elif all(
        any(m.fstype == "cgroup" and c in m.controllers for m in mounts) for c in ("memory", "pids")
    ):
        version = 1
    path = own.get("", "/") if version == 2 else own.get("memory", own.get("", "/"))
    unit = next((p for p in reversed(path.split("/")) if p.endswith((".service", ".scope"))), None)
    return CgroupFacts(version=version, own_path=path, under_systemd_unit=unit)


def probe_bwrap() -> str | None:
    """Run ``true`` in a real sandbox shaped like a job's (namespaces, binds, no cgroup);
    None when it ran, else why not."""
    from provider_node.runtimes.bwrap import BwrapRuntime

    runtime = BwrapRuntime()
    if shutil.which(runtime.bwrap) is None:
        return "bubblewrap (bwrap) is not installed"
    with tempfile.TemporaryDirectory(prefix="gpumarket-doctor-") as tmp:
        inputs, outputs = Path(tmp, "inputs"), Path(tmp, "outputs")
        inputs.mkdir()
        outputs.mkdir()
        argv = runtime.sandbox_argv(inputs, outputs, (), ["true"])
        code, _, err = run_command(argv)
    if code != 0:
        return f"bwrap cannot create its namespaces: {err.strip()[:300] or f'exit {code}'}"
    return None


def probe_cgroup_creation() -> str | None:
    from provider_node.runtimes.cgroups import cgroups_unavailable_reason

    return cgroups_unavailable_reason()


def check_bwrap(reason: str | None, *, runtime: str) -> Check:
    must = runtime == "bwrap"
    if reason is None:
        return Check("bwrap", CheckStatus.OK, must, "a bubblewrap sandbox started and ran `true`")
    if "not installed" in reason:
        fix = "`apt-get install bubblewrap` (or your distribution's bubblewrap package)"
    else:
        fix = (
            "allow unprivileged user namespaces: `sysctl -w kernel.unprivileged_userns_clone=1` "
            "and, on Ubuntu 24.04+, `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; "
            "inside a container, start it with `--security-opt seccomp=unconfined` or run the "
            "provider on the host"
        )
    verdict = CheckStatus.FAIL if must else CheckStatus.WARN
    return Check("bwrap", verdict, must, reason, fix)


def cgroup_fix(facts: CgroupFacts) -> str:
    """The exact change that lets the provider create job cgroups on this host."""
    if facts.version is None:
        return (
            "enable the memory and pids cgroup controllers: boot with "
            "`systemd.unified_cgroup_hierarchy=1` (cgroup v2) or mount the v1 memory and "
            "pids hierarchies"
        )
    if facts.version == 1:
        return (
            "run the provider as root, or give its user write access to the memory and "
            "pids hierarchies at " + facts.own_path
        )
    return (
        f"run the daemon as the systemd unit {UNIT_FILE} (its [Service] section sets "
        "`Delegate=yes`, so the service owns its cgroup subtree and the daemon moves itself "
        "into a leaf of it); for a one-off run: `systemd-run --scope -p Delegate=yes "
        "gpumarket provider run`"
        + (
            f" (now inside {facts.under_systemd_unit}, which does not delegate)"
            if facts.under_systemd_unit
            else ""
        )
    )


def check_cgroups(reason: str | None, facts: CgroupFacts, *, runtime: str) -> Check:
    must = runtime == "bwrap"
    where = f"cgroup v{facts.version}" if facts.version else "no usable cgroup hierarchy"
    if reason is None:
        return Check(
            "cgroups",
            CheckStatus.OK,
            must,
            f"{where}: a job cgroup with memory and pids limits was created at {facts.own_path}",
        )
    verdict = CheckStatus.FAIL if must else CheckStatus.WARN
    return Check("cgroups", verdict, must, f"{where}: {reason}", cgroup_fix(facts))
