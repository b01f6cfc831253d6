"""``gpumarket provider doctor``: everything a provider needs before it can earn, checked.

Each :class:`Check` carries a :class:`Verdict` (ok, warn, fail), whether it is a must-have
(the daemon cannot serve jobs without it: ``provider run`` refuses to start) and, when it is
not ok, the exact fix. Checks work by doing where they can: a real bubblewrap sandbox runs
``true``, a job cgroup is created and removed, the listen port is bound, the RPC node and the
IPFS API are asked. Host facts are gathered by the probes in :class:`HostProbes`, so tests
can hand every check controlled inputs; the ``check_*`` functions are pure.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol.errors import GpuMarketError
from protocol.ids import format_tokens
from protocol.p2p.addresses import host_port, probe_sync, unspecified
from provider_node.runtimes.container import CONTAINER_RUNTIMES

if TYPE_CHECKING:
    from provider_node.settings import ProviderSettings
    from provider_node.staking import ProviderChain

log = logging.getLogger(__name__)

UNIT_FILE = "deploy/gpumarket-provider.service"
"""The systemd unit shipped with the project (it delegates the cgroup subtree)."""
PROBE_TIMEOUT_S = 20.0
"""Longest any one external command or request of the doctor may take."""
CLOCK_OK_S = 10
"""Skew between this host's clock and the chain's up to which deadlines and adverts agree."""


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, what was found, and how to fix it when not ok."""

    name: str
    verdict: Verdict
    must_have: bool
    found: str
    fix: str | None = None

    @property
    def blocking(self) -> bool:
        """A must-have that failed: the daemon must not start."""
        return self.must_have and self.verdict is Verdict.FAIL

    def line(self) -> str:
        """The check as one line of text, with its fix."""
        need = "must-have" if self.must_have else "optional"
        text = f"{self.verdict.value.upper():4} {self.name} ({need}): {self.found}"
        return f"{text}; fix: {self.fix}" if self.fix and self.verdict is not Verdict.OK else text

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "must_have": self.must_have,
            "found": self.found,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def blocking(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.blocking)

    def get(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def view(self) -> dict[str, Any]:
        return {
            "ready": not self.blocking,
            "checks": [c.view() for c in self.checks],
        }


# ---------------------------------------------------------------------------------------
# Host facts


@dataclass(frozen=True)
class TorchFacts:
    """What the installed torch sees; ``version`` None: torch does not import."""

    version: str | None
    cuda: str | None = None
    """The CUDA version torch was built for (None: a CPU or ROCm build)."""
    hip: str | None = None
    devices: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class NvmlFacts:
    """What the NVIDIA driver reports through NVML; ``available`` False: no NVML here."""

    available: bool
    driver: str | None = None
    cuda_driver: str | None = None
    """The newest CUDA version the driver supports, e.g. ``"13.0"``."""
    devices: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class CgroupFacts:
    """Which cgroup hierarchy offers the job limits, and where this process sits."""

    version: int | None
    """2: the unified hierarchy has memory and pids; 1: v1 hierarchies do; None: neither."""
    own_path: str
    under_systemd_unit: str | None = None
    """The systemd unit (``*.service``/``*.scope``) whose cgroup holds this process."""


@dataclass(frozen=True)
class ContainerFacts:
    """The container engine found, if any, and whether it can hand GPUs to containers."""

    engine: str | None
    answers: bool = False
    detail: str = ""
    gpu_access: bool = False
    """An NVIDIA container runtime is registered or a CDI spec for ``nvidia.com/gpu`` exists."""


def probe_torch() -> TorchFacts:
    try:
        import torch
    except ImportError as exc:
        return TorchFacts(version=None, error=str(exc))
    devices: tuple[str, ...] = ()
    error = None
    try:
        if torch.cuda.is_available():
            devices = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception as exc:  # a broken driver surfaces as a RuntimeError here
        error = str(exc)
    return TorchFacts(
        version=str(torch.__version__),
        cuda=torch.version.cuda,
        hip=getattr(torch.version, "hip", None),
        devices=devices,
        error=error,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_nvml(nvml: Any | None = None) -> NvmlFacts:
    """NVML's view of the GPUs; pass ``nvml`` (an initialised pynvml-like module) to inject."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return NvmlFacts(available=False, error="pynvml (nvidia-ml-py) is not installed")
        try:
            pynvml.nvmlInit()
        except Exception as exc:
            return NvmlFacts(available=False, error=f"NVML does not start: {exc}")
        nvml = pynvml
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda_int = int(nvml.nvmlSystemGetCudaDriverVersion())
        names = tuple(
            _text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i)))
            for i in range(int(nvml.nvmlDeviceGetCount()))
        )
    except Exception as exc:
        return NvmlFacts(available=True, error=f"NVML read failed: {exc}")
    cuda = f"{cuda_int // 1000}.{cuda_int % 1000 // 10}"
    return NvmlFacts(available=True, driver=driver, cuda_driver=cuda, devices=names)


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


def _run(argv: Sequence[str], timeout: float = PROBE_TIMEOUT_S) -> tuple[int, str, str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, "", str(exc)
    return (
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )


CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))


def _cdi_has_nvidia(dirs: Sequence[Path] = CDI_DIRS) -> bool:
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
        code, out, err = _run([binary, "info", "--format", "{{json .}}"], timeout=10)
        if code != 0:
            found = found or ContainerFacts(engine, False, (err or out).strip()[:300])
            continue
        gpu = _cdi_has_nvidia()
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
        code, _, err = _run(argv)
    if code != 0:
        return f"bwrap cannot create its namespaces: {err.strip()[:300] or f'exit {code}'}"
    return None


def probe_cgroup_creation() -> str | None:
    from provider_node.runtimes.cgroups import cgroups_unavailable_reason

    return cgroups_unavailable_reason()


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


# ---------------------------------------------------------------------------------------
# Checks (pure: facts in, verdict out)

TORCH_CUDA_FIX = (
    "install a CUDA build of torch no newer than the driver supports, e.g. "
    "`pip install torch --index-url https://download.pytorch.org/whl/cu126`"
)
NVML_FIX = "`pip install nvidia-ml-py` (health checks and GPU utilization read NVML)"


def check_gpus(torch: TorchFacts, nvml: NvmlFacts, *, cpu_only: bool) -> Check:
    name = "gpus"
    if torch.version is None:
        return Check(
            name,
            Verdict.FAIL,
            True,
            f"torch does not import: {torch.error}",
            "install the project's dependencies: `pip install -e .`",
        )
    seen = len(torch.devices)
    listed = len(nvml.devices)
    if seen == 0 and listed == 0:
        found = f"no GPU visible to torch {torch.version}, nor to NVML"
        found += f" ({nvml.error})" if nvml.error else ""
        if torch.error:
            found += f" ({torch.error})"
        if cpu_only:
            return Check(name, Verdict.OK, True, found + "; offering the CPU (PROVIDER_CPU_ONLY)")
        return Check(
            name,
            Verdict.FAIL,
            True,
            found,
            "set PROVIDER_CPU_ONLY=true to offer the CPU, or install the GPU driver",
        )
    if seen == 0:
        why = torch.error or f"torch {torch.version} is built for " + (
            f"CUDA {torch.cuda}" if torch.cuda else "the CPU only"
        )
        return Check(
            name,
            Verdict.FAIL,
            True,
            f"NVML lists {listed} GPU(s) ({', '.join(nvml.devices)}) but torch sees none: {why}",
            TORCH_CUDA_FIX,
        )
    found = f"torch sees {seen} GPU(s): {', '.join(torch.devices)}"
    if not nvml.available:
        return Check(
            name, Verdict.WARN, False, f"{found}; NVML unavailable ({nvml.error})", NVML_FIX
        )
    if nvml.error:
        return Check(
            name,
            Verdict.WARN,
            False,
            f"{found}; {nvml.error}",
            "check the driver with `nvidia-smi`",
        )
    if listed != seen:
        return Check(
            name,
            Verdict.WARN,
            False,
            f"{found}, NVML lists {listed}: some GPUs are hidden (CUDA_VISIBLE_DEVICES) or failing",
            "unset CUDA_VISIBLE_DEVICES, or check `nvidia-smi -q` for the missing GPUs",
        )
    return Check(name, Verdict.OK, True, f"{found}; NVML lists the same {listed}")


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_driver(torch: TorchFacts, nvml: NvmlFacts) -> Check:
    name = "driver"
    if not nvml.available or nvml.cuda_driver is None:
        if torch.devices:
            return Check(
                name,
                Verdict.OK,
                True,
                f"torch {torch.version} (CUDA {torch.cuda or torch.hip}) runs on "
                "this driver (NVML not available to read its version)",
            )
        return Check(
            name,
            Verdict.OK,
            False,
            f"NVML unavailable ({nvml.error}) and no GPU visible to torch: "
            "no driver to match against torch",
        )
    found = f"driver {nvml.driver} supports CUDA up to {nvml.cuda_driver}"
    if torch.cuda is None:
        if not nvml.devices:
            return Check(name, Verdict.OK, False, found + "; no GPU to drive")
        return Check(
            name, Verdict.FAIL, True, found + f"; torch {torch.version} has no CUDA", TORCH_CUDA_FIX
        )
    if _version(torch.cuda)[:2] > _version(nvml.cuda_driver)[:2]:
        return Check(
            name,
            Verdict.FAIL,
            True,
            f"{found}, older than torch's CUDA {torch.cuda}",
            f"upgrade the NVIDIA driver to one supporting CUDA {torch.cuda}, or "
            f"install a torch built for CUDA {nvml.cuda_driver} or older",
        )
    return Check(name, Verdict.OK, True, f"{found}; torch is built for CUDA {torch.cuda}")


def check_bwrap(reason: str | None, *, runtime: str) -> Check:
    must = runtime == "bwrap"
    if reason is None:
        return Check("bwrap", Verdict.OK, must, "a bubblewrap sandbox started and ran `true`")
    if "not installed" in reason:
        fix = "`apt-get install bubblewrap` (or your distribution's bubblewrap package)"
    else:
        fix = (
            "allow unprivileged user namespaces: `sysctl -w kernel.unprivileged_userns_clone=1` "
            "and, on Ubuntu 24.04+, `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; "
            "inside a container, start it with `--security-opt seccomp=unconfined` or run the "
            "provider on the host"
        )
    verdict = Verdict.FAIL if must else Verdict.WARN
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
            Verdict.OK,
            must,
            f"{where}: a job cgroup with memory and pids limits was created at {facts.own_path}",
        )
    verdict = Verdict.FAIL if must else Verdict.WARN
    return Check("cgroups", verdict, must, f"{where}: {reason}", cgroup_fix(facts))


def check_container(
    facts: ContainerFacts, *, runtime: str, gpus: int, runtime_reason: str | None = None
) -> Check:
    """``runtime_reason``: why the container runtime itself cannot run (its own probe),
    which decides for ``PROVIDER_RUNTIME=docker`` or ``podman`` whatever other engine
    answers."""
    must = runtime in CONTAINER_RUNTIMES
    name = "container"
    bad = Verdict.FAIL if must else Verdict.WARN
    if must and runtime_reason is not None:
        return Check(
            name,
            Verdict.FAIL,
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
                Verdict.OK,
                False,
                f"no docker or podman (not used: PROVIDER_RUNTIME={runtime})",
            )
        return Check(
            name,
            Verdict.FAIL,
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
    return Check(name, Verdict.OK, must, f"{facts.engine} answers{gpu}")


def disk_needed(settings: ProviderSettings) -> tuple[int, int]:
    """Bytes the work directory must have free for one job (its inputs plus as much again
    of outputs) and for every job that may run or wait at once."""
    one = 2 * settings.max_input_bytes
    return one, one * (settings.max_concurrent_jobs + settings.max_queued_jobs)


def check_disk(
    work_dir: Path, free: int | None, needed: tuple[int, int], error: str | None = None
) -> Check:
    gib = 1 << 30
    if free is None:
        return Check(
            "disk",
            Verdict.FAIL,
            True,
            f"cannot use {work_dir}: {error}",
            f"create {work_dir} writable by the provider, or set PROVIDER_WORK_DIR",
        )
    one, every = needed
    found = (
        f"{free / gib:.1f} GiB free at {work_dir}; one job may need {one / gib:.1f} GiB, "
        f"all slots and queue {every / gib:.1f} GiB"
    )
    if free >= every:
        return Check("disk", Verdict.OK, True, found)
    fix = (
        "free space there, move PROVIDER_WORK_DIR, or lower PROVIDER_MAX_INPUT_BYTES, "
        "PROVIDER_MAX_CONCURRENT_JOBS or PROVIDER_MAX_QUEUED_JOBS"
    )
    return Check("disk", Verdict.FAIL if free < one else Verdict.WARN, True, found, fix)


def probe_disk(work_dir: Path) -> tuple[int | None, str | None]:
    """Free bytes where job directories go, after proving the directory is writable."""
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=work_dir, prefix=".doctor-"):
            pass
        return shutil.disk_usage(work_dir).free, None
    except OSError as exc:
        return None, str(exc)


def check_port(host: str, port: int, variable: str, error: str | None) -> Check:
    name = f"port {variable}"
    where = f"{host}:{port}" if port else f"{host} (a free port is picked)"
    if error is not None:
        return Check(
            name,
            Verdict.FAIL,
            True,
            f"cannot listen on {where}: {error}",
            f"stop what holds the port (`ss -ltnp 'sport = :{port}'`) or set {variable}",
        )
    if host.startswith("127.") and variable in ("PROVIDER_P2P_PORT", "PROVIDER_LISTEN"):
        return Check(
            name,
            Verdict.WARN,
            False,
            f"{where} is bindable but loopback only: coordinators on other hosts cannot dial it",
            "set PROVIDER_LISTEN=/ip4/0.0.0.0/tcp/PORT, announce the address others reach "
            "(PROVIDER_ANNOUNCE) and open the port",
        )
    return Check(name, Verdict.OK, True, f"{where} is bindable")


def check_announce(listen: str, announce: tuple[str, ...]) -> Check:
    """Whether adverts carry an address others can dial."""
    if announce:
        return Check(
            "announce",
            Verdict.OK,
            False,
            f"adverts carry {', '.join(announce)} (listening on {listen})",
        )
    if unspecified(listen):
        return Check(
            "announce",
            Verdict.WARN,
            False,
            f"listening on {listen} (every interface) without an announce address: adverts "
            "carry addresses no coordinator on another host can dial",
            "set PROVIDER_ANNOUNCE (or `provider run --announce`) to the public or "
            "port-forwarded multiaddr, e.g. /ip4/203.0.113.7/tcp/4001",
        )
    return Check("announce", Verdict.OK, False, f"adverts carry the listen address {listen}")


def check_coordinator(addr: str, error: str | None) -> Check:
    """Whether the coordinator's multiaddr accepts a connection from this host."""
    peer = addr.rsplit("/p2p/", 1)[-1] if "/p2p/" in addr else "?"
    if error is None:
        return Check("coordinator", Verdict.OK, False, f"{addr} accepts connections")
    return Check(
        "coordinator",
        Verdict.FAIL,
        False,
        f"coordinator {peer} does not answer at {addr}: {error}",
        "set PROVIDER_COORDINATOR_MULTIADDR to the address the coordinator announces (its "
        "ready file and start-up log give it); a coordinator behind a NAT must announce its "
        "public address (COORDINATOR_ANNOUNCE / `coordinator run --announce`), forward that "
        "port and open it in its firewall",
    )


def probe_port(host: str, port: int) -> str | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return str(exc)
    return None


def check_ipfs(api: str, version: str | None, error: str | None) -> Check:
    if version is None:
        return Check(
            "ipfs",
            Verdict.FAIL,
            True,
            f"the IPFS API at {api} does not answer: {error}",
            "start the IPFS daemon (`ipfs daemon`) or set PROVIDER_IPFS_API to its "
            "RPC address, e.g. http://127.0.0.1:5001",
        )
    return Check("ipfs", Verdict.OK, True, f"the IPFS API at {api} answers (version {version})")


def probe_ipfs(api: str) -> tuple[str | None, str | None]:
    import httpx

    try:
        response = httpx.post(f"{api.rstrip('/')}/api/v0/version", timeout=PROBE_TIMEOUT_S / 2)
        response.raise_for_status()
        return str(response.json().get("Version", "?"))[:64], None
    except (httpx.HTTPError, ValueError) as exc:
        return None, str(exc) or type(exc).__name__


def check_registration(registered: bool, *, gas_short: str | None) -> Check:
    if registered:
        return Check("registration", Verdict.OK, False, "registered as a provider on chain")
    if gas_short:
        return Check(
            "registration",
            Verdict.FAIL,
            True,
            f"not registered, and the account cannot pay the gas: {gas_short}",
            "send the account some of the chain's native token",
        )
    return Check(
        "registration",
        Verdict.WARN,
        False,
        "not registered yet",
        "nothing to do: the daemon registers at start (or run `gpumarket provider register`)",
    )


def check_stake(bonded: int, balance: int, target: int) -> Check:
    found = (
        f"{format_tokens(bonded)} tokens bonded, target {format_tokens(target)} (PROVIDER_STAKE)"
    )
    missing = max(0, target - bonded)
    if not missing:
        return Check("stake", Verdict.OK, True, found)
    if balance >= missing:
        return Check(
            "stake",
            Verdict.OK,
            True,
            f"{found}; the daemon bonds the missing {format_tokens(missing)} at start "
            f"from the {format_tokens(balance)} held",
        )
    return Check(
        "stake",
        Verdict.FAIL,
        True,
        f"{found}; {format_tokens(missing)} more are needed but the account holds "
        f"{format_tokens(balance)}",
        f"send the account {format_tokens(missing - balance)} tokens, or lower PROVIDER_STAKE",
    )


def check_gas(fallback_warning: str | None, start_short: str | None) -> Check:
    if start_short is not None:
        return Check(
            "gas",
            Verdict.FAIL,
            True,
            f"cannot pay the gas to register or bond at start: {start_short}",
            "send the account some of the chain's native token",
        )
    if fallback_warning is not None:
        return Check(
            "gas",
            Verdict.WARN,
            False,
            fallback_warning,
            "send the account enough native token for on-chain commits and reveals",
        )
    return Check(
        "gas",
        Verdict.OK,
        False,
        "enough native token to commit and reveal running jobs on chain if their coordinator "
        "vanishes",
    )


def check_clock(local: float, chain_time: int, ttl_s: int) -> Check:
    skew = local - chain_time
    found = (
        f"this host's clock is {abs(skew):.0f} s {'ahead of' if skew >= 0 else 'behind'} "
        "the chain's newest block"
    )
    if abs(skew) <= CLOCK_OK_S:
        return Check("clock", Verdict.OK, False, found)
    fix = "synchronise the clock (`timedatectl set-ntp true`, chrony or systemd-timesyncd)"
    if abs(skew) > ttl_s:
        return Check(
            "clock",
            Verdict.FAIL,
            False,
            f"{found}: adverts (valid {ttl_s} s) arrive already expired or too long-lived",
            fix,
        )
    return Check("clock", Verdict.WARN, False, found, fix)


# ---------------------------------------------------------------------------------------
# The doctor


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


def chain_checks(
    settings: ProviderSettings, probes: HostProbes, chain: ProviderChain | None = None
) -> list[Check]:
    """RPC, keystore, registration, stake, gas and clock; stops at the first one the
    rest depend on."""
    from protocol.identity import load_keystore
    from provider_node import staking
    from provider_node.daemon import connect_chain

    checks: list[Check] = []
    if chain is None:
        try:
            identity = load_keystore(settings.keystore, settings.keystore_password())
        except GpuMarketError as exc:
            checks.append(
                Check(
                    "keystore",
                    Verdict.FAIL,
                    True,
                    str(exc),
                    "set PROVIDER_KEYSTORE and PROVIDER_PASSWORD_FILE to the "
                    "provider's keystore and its password file",
                )
            )
            return checks
        checks.append(Check("keystore", Verdict.OK, True, f"unlocked {identity.address}"))
        try:
            chain = connect_chain(settings, identity)
        except GpuMarketError as exc:
            checks.append(
                Check(
                    "rpc",
                    Verdict.FAIL,
                    True,
                    str(exc),
                    "start the chain node or set PROVIDER_RPC_URL (and "
                    "PROVIDER_CHAIN_ID) to a reachable one",
                )
            )
            return checks
        code = chain.w3.eth.get_code(chain.w3.to_checksum_address(settings.market))
        if not code:
            checks.append(
                Check(
                    "rpc",
                    Verdict.FAIL,
                    True,
                    f"no contract at PROVIDER_MARKET_ADDRESS {settings.market} "
                    f"on chain {chain.deployment.chain_id}",
                    "set PROVIDER_MARKET_ADDRESS (or PROVIDER_NETWORK) to the "
                    "market deployed on this chain",
                )
            )
            return checks
        checks.append(
            Check(
                "rpc",
                Verdict.OK,
                True,
                f"{settings.rpc_url} serves chain {chain.deployment.chain_id} "
                "with the market deployed",
            )
        )
    try:
        info = chain.provider_info(chain.address)
        balance = chain.token_balance(chain.address)
        needed_gas = (0 if info.registered else staking.GAS_BOUNDS["register"]) + (
            staking.GAS_BOUNDS["stake"] if info.stake < settings.stake_wei else 0
        )
        short = chain.gas_shortfall(needed_gas) if needed_gas else None
        fallback = staking.fallback_gas_warning(chain, settings.max_concurrent_jobs)
        latest = chain.now()
        pending = getattr(chain, "next_block_time", None)
        chain_time = max(latest, int(pending())) if callable(pending) else latest
    except GpuMarketError as exc:
        checks.append(
            Check(
                "chain",
                Verdict.FAIL,
                True,
                f"reading the chain failed: {exc}",
                "check PROVIDER_RPC_URL and the contract addresses",
            )
        )
        return checks
    start_short = str(short) if short is not None else None
    checks.append(check_registration(info.registered, gas_short=start_short))
    checks.append(check_stake(info.stake, balance, settings.stake_wei))
    checks.append(check_gas(fallback, start_short))
    checks.append(check_clock(probes.clock(), chain_time, settings.advert_ttl_s))
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


def settings_failure(exc: GpuMarketError) -> Check:
    return Check(
        "settings",
        Verdict.FAIL,
        True,
        str(exc),
        "set the named PROVIDER_* variables (see deploy/provider.env)",
    )


def report_lines(report: Report) -> list[str]:
    lines = [c.line() for c in report.checks]
    if report.blocking:
        names = ", ".join(c.name for c in report.blocking)
        lines.append(f"not ready: {len(report.blocking)} must-have check(s) failed ({names})")
    else:
        lines.append("ready: every must-have check passed")
    return lines


def preflight(settings: ProviderSettings, probes: HostProbes | None = None) -> Report:
    """The must-have checks ``provider run`` makes before starting; raises
    :class:`~protocol.errors.ConfigError` with the doctor's line for each one that fails."""
    from protocol.errors import ConfigError

    report = run_doctor(settings, probes=probes, required_only=True)
    for check in report.checks:
        if check.verdict is not Verdict.OK and not check.blocking:
            log.warning("%s", check.line())
    if report.blocking:
        lines = "; ".join(c.line() for c in report.blocking)
        raise ConfigError(f"not starting, `gpumarket provider doctor` found: {lines}")
    return report


def doctor_command(as_json: bool, runtime: str | None = None) -> int:
    """What ``gpumarket provider doctor`` does: check, print, and return the exit status
    (1 when a must-have check fails)."""
    from provider_node.settings import load_settings

    try:
        settings = load_settings(runtime=runtime)
    except GpuMarketError as exc:
        # Without settings the host can still be examined.
        cpu_only = os.environ.get("PROVIDER_CPU_ONLY", "").lower() in ("1", "true", "yes")
        checks = host_checks(HostProbes(), runtime=runtime or "bwrap", cpu_only=cpu_only)
        report = Report((settings_failure(exc), *checks))
    else:
        report = run_doctor(settings)
    if as_json:
        print(json.dumps(report.view(), sort_keys=True))
    else:
        for line in report_lines(report):
            print(line)
    return 1 if report.blocking else 0
