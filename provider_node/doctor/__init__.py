"""``gpumarket provider doctor``: everything a provider needs before it can earn, checked.

Each :class:`Check` carries a :class:`CheckStatus` (ok, warn, fail), whether it is a must-have
(the daemon cannot serve jobs without it: ``provider run`` refuses to start) and, when it is
not ok, the exact fix. Checks work by doing where they can: a real bubblewrap sandbox runs
``true``, a job cgroup is created and removed, the listen port is bound, the RPC node and the
IPFS API are asked. Host facts are gathered by the probes in :class:`HostProbes`, so tests
can hand every check controlled inputs; the ``check_*`` functions are pure.

One module per concern: ``report`` (the findings and their text), ``gpu`` (torch, NVML,
driver), ``sandbox`` (bubblewrap and job cgroups), ``container`` (docker/podman and GPU
access), ``resources`` (disk, ports, IPFS), ``chain`` (keystore, RPC, registration, stake,
gas, clock), ``probes`` (bounded external commands), ``runner`` (which checks run, the
preflight of ``provider run``) and ``cli``.
"""

from provider_node.doctor.chain import (
    CLOCK_OK_S,
    chain_checks,
    check_clock,
    check_gas,
    check_registration,
    check_stake,
)
from provider_node.doctor.cli import doctor_command, settings_failure
from provider_node.doctor.container import (
    CDI_DIRS,
    ContainerFacts,
    cdi_has_nvidia,
    check_container,
    probe_container,
    probe_container_runtime,
)
from provider_node.doctor.gpu import (
    NVML_FIX,
    TORCH_CUDA_FIX,
    NvmlFacts,
    TorchFacts,
    check_driver,
    check_gpus,
    probe_nvml,
    probe_torch,
)
from provider_node.doctor.probes import PROBE_TIMEOUT_S
from provider_node.doctor.report import Check, CheckStatus, Report, report_lines
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
from provider_node.doctor.runner import HostProbes, host_checks, preflight, run_doctor
from provider_node.doctor.sandbox import (
    UNIT_FILE,
    CgroupFacts,
    cgroup_fix,
    check_bwrap,
    check_cgroups,
    probe_bwrap,
    probe_cgroup_creation,
    probe_cgroups,
)

__all__ = [
    "CDI_DIRS",
    "CLOCK_OK_S",
    "NVML_FIX",
    "PROBE_TIMEOUT_S",
    "TORCH_CUDA_FIX",
    "UNIT_FILE",
    "CgroupFacts",
    "Check",
    "CheckStatus",
    "ContainerFacts",
    "HostProbes",
    "NvmlFacts",
    "Report",
    "TorchFacts",
    "cdi_has_nvidia",
    "cgroup_fix",
    "chain_checks",
    "check_announce",
    "check_bwrap",
    "check_cgroups",
    "check_clock",
    "check_container",
    "check_coordinator",
    "check_disk",
    "check_driver",
    "check_gas",
    "check_gpus",
    "check_ipfs",
    "check_port",
    "check_registration",
    "check_stake",
    "disk_needed",
    "doctor_command",
    "host_checks",
    "preflight",
    "probe_bwrap",
    "probe_cgroup_creation",
    "probe_cgroups",
    "probe_container",
    "probe_container_runtime",
    "probe_disk",
    "probe_ipfs",
    "probe_nvml",
    "probe_port",
    "probe_torch",
    "report_lines",
    "run_doctor",
    "settings_failure",
]
