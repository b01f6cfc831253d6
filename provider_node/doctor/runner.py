"""The doctor itself: where host facts come from, which checks run for a runtime, and the
preflight ``provider run`` makes before starting."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocol.p2p.addresses import host_port, probe_sync
from provider_node.doctor.chain import chain_checks
from provider_node.doctor.container import (
    ContainerFacts,
    check_container,
    probe_container,
    probe_container_runtime,
)
from provider_node.doctor.gpu import (
    NvmlFacts,
    TorchFacts,
    check_driver,
    check_gpus,
    probe_nvml,
    probe_torch,
)
from provider_node.doctor.report import Check, CheckStatus, Report
from provider_node.doctor.resources import (
    check_announce,
    check_coordinator,
    check_disk,
    check_ipfs,
    check_port,
    disk_needed,
    probe_disk,
    probe_ipfs,
    probe_port,
)
from provider_node.doctor.sandbox import (
    CgroupFacts,
    check_bwrap,
    check_cgroups,
    probe_bwrap,
    probe_cgroup_creation,
    probe_cgroups,
)
from provider_node.runtimes.container import CONTAINER_RUNTIMES

if TYPE_CHECKING:
    from provider_node.settings import ProviderSettings
    from provider_node.staking import ProviderChain

log = logging.getLogger(__name__)


@dataclass
class HostProbes:
    """Where the host facts come from; replace any of them to test a check's verdicts."""

    torch: Callable[[], TorchFacts] = probe_torch
    nvml: Callable[[], NvmlFacts] = probe_nvml
    bwrap: Callable[[], str | None] = probe_bwrap
    cgroup_facts: Callable[[], CgroupFacts] = probe_cgroups
    cgroup_creation: Callable[[], str | None] = probe_cgroup_creation
    container: Callable[[], ContainerFacts] = probe_container
    container_runtime: Callable[[str], str | None] = probe_container_runtime
    clock: Callable[[], float] = time.time


def host_checks(
    probes: HostProbes, *, runtime: str, cpu_only: bool, required_only: bool = False
) -> list[Check]:
    """The checks of the machine itself (no settings beyond the runtime needed)."""
    torch, nvml = probes.torch(), probes.nvml()
    gpus = len(torch.devices) or len(nvml.devices)
    checks = [check_gpus(torch, nvml, cpu_only=cpu_only), check_driver(torch, nvml)]
    if runtime == "bwrap" or not required_only:
        checks.append(check_bwrap(probes.bwrap(), runtime=runtime))
        checks.append(
            check_cgroups(probes.cgroup_creation(), probes.cgroup_facts(), runtime=runtime)
        )
    if runtime in CONTAINER_RUNTIMES or not required_only:
        reason = probes.container_runtime(runtime) if runtime in CONTAINER_RUNTIMES else None
        checks.append(
            check_container(probes.container(), runtime=runtime, gpus=gpus, runtime_reason=reason)
        )
    return checks


def run_doctor(
    settings: ProviderSettings,
    *,
    probes: HostProbes | None = None,
    chain: ProviderChain | None = None,
    required_only: bool = False,
) -> Report:
    """Every check for ``settings``; ``required_only`` skips those that cannot be a
    must-have for its runtime (what ``provider run`` does before starting)."""
    probes = probes or HostProbes()
    runtime = settings.runtime
    checks = host_checks(
        probes, runtime=runtime, cpu_only=settings.cpu_only, required_only=required_only
    )
    free, error = probe_disk(settings.work_dir)
    checks.append(check_disk(settings.work_dir, free, disk_needed(settings), error))
    if settings.listen is not None:
        host, port = host_port(settings.listen)
        checks.append(check_port(host, port, "PROVIDER_LISTEN", probe_port(host, port)))
    else:
        checks.append(
            check_port(
                settings.p2p_host,
                settings.p2p_port,
                "PROVIDER_P2P_PORT",
                probe_port(settings.p2p_host, settings.p2p_port),
            )
        )
    checks.append(check_announce(settings.listen_multiaddr, settings.announce))
    if settings.coordinator_multiaddr and not required_only:
        addr = settings.coordinator_multiaddr
        checks.append(check_coordinator(addr, probe_sync(addr.split("/p2p/")[0])))
    if settings.metrics_port is not None:
        checks.append(
            check_port(
                settings.metrics_host,
                settings.metrics_port,
                "PROVIDER_METRICS_PORT",
                probe_port(settings.metrics_host, settings.metrics_port),
            )
        )
    version, ipfs_error = probe_ipfs(settings.ipfs_api)
    checks.append(check_ipfs(settings.ipfs_api, version, ipfs_error))
    checks.extend(chain_checks(settings, probes, chain))
    return Report(tuple(checks))


def preflight(settings: ProviderSettings, probes: HostProbes | None = None) -> Report:
    """The must-have checks ``provider run`` makes before starting; raises
    :class:`~protocol.errors.ConfigError` with the doctor's line for each one that fails."""
    from protocol.errors import ConfigError

    report = run_doctor(settings, probes=probes, required_only=True)
    for check in report.checks:
        if check.verdict is not CheckStatus.OK and not check.blocking:
            log.warning("%s", check.line())
    if report.blocking:
        lines = "; ".join(c.line() for c in report.blocking)
        raise ConfigError(f"not starting, `gpumarket provider doctor` found: {lines}")
    return report
