"""Per-job control groups: the memory, process and CPU limits of a sandboxed run.

rlimits alone do not do: ``RLIMIT_NPROC`` does not bind root and an address-space limit
breaks CUDA, so each run gets its own cgroup. cgroup v2 is used when its unified hierarchy
offers both ``memory`` and ``pids``; otherwise the v1 ``memory`` and ``pids`` hierarchies
(what this project's machines expose). A job cgroup is created below the cgroup the
provider itself runs in, so limits set on the provider still bind its jobs.

cgroup v2 keeps processes only in leaves: a cgroup that holds the daemon cannot hand
controllers to job groups. Where the daemon owns its cgroup (a systemd unit with
``Delegate=yes``), it first moves itself into the leaf :data:`DAEMON_LEAF` of it, and job
groups go beside that leaf.
The CPU quota (the spec's ``resources.cpus``) uses the ``cpu`` controller where the host
offers one (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``); where it does not, the job runs without
one and :meth:`JobCgroup.set_cpu_quota` says why, so the runtime can say so.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import SandboxError

log = logging.getLogger(__name__)

_PARENT_NAME = "gpumarket"
DAEMON_LEAF = "gpumarket-daemon"
"""The cgroup v2 leaf the daemon moves into so that its own cgroup can hold job groups."""
CPU_PERIOD_US = 100_000
"""The CFS period a CPU quota is expressed in (the kernel's default)."""
MIN_CPU_QUOTA_US = 1_000


@dataclass(frozen=True)
class _Mount:
    fstype: str  # "cgroup" or "cgroup2"
    root: str  # the part of the hierarchy the mount shows
    path: Path
    controllers: frozenset[str]


def _mounts() -> list[_Mount]:
    found: list[_Mount] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            pre, _, post = line.partition(" - ")
            fields, tail = pre.split(), post.split()
            if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
                continue
            if tail[0] == "cgroup":
                controllers = frozenset(tail[2].split(","))
            else:
                controllers_file = Path(fields[4]) / "cgroup.controllers"
                try:
                    controllers = frozenset(controllers_file.read_text().split())
                except OSError:
                    controllers = frozenset()
            found.append(_Mount(tail[0], fields[3], Path(fields[4]), controllers))
    return found


def _own_paths() -> dict[str, str]:
    """Map controller name (``""`` for v2) to this process's cgroup path."""
    paths: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as fh:
        for line in fh:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(",") if names else [""]:
                paths[name] = path
    return paths


def _inside(mount: _Mount, own: str) -> Path:
    rel = os.path.relpath(own, mount.root) if own.startswith(mount.root) else "."
    return (mount.path / rel).resolve() if rel != "." else mount.path


class JobCgroup:
    """The cgroup directories of one run, one per hierarchy that carries a controller.

    Use :meth:`procs_files` to place the sandbox's first process in the group before it
    execs anything, then read the facts, then :meth:`close` (kills leftovers, removes dirs).
    """

    def __init__(
        self, version: int, dirs: dict[str, Path], no_cpu: str | None = "no cpu controller"
    ) -> None:
        self.version = version
        self._dirs = dirs  # controller -> directory; the keys name one dir under v2
        self.no_cpu = no_cpu
        """Why this group cannot hold a CPU quota; None when it can."""

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in dict.fromkeys(self._dirs.values())]

    def _read(self, controller: str, name: str) -> str:
        try:
            return (self._dirs[controller] / name).read_text()
        except OSError:
            return ""

    def _write(self, controller: str, name: str, value: str) -> None:
        try:
            (self._dirs[controller] / name).write_text(value)
        except OSError as exc:
            raise SandboxError(f"cannot set {name} on the job cgroup: {exc}") from exc

    def set_limits(self, memory_bytes: int, max_pids: int) -> None:
        if self.version == 2:
            self._write("memory", "memory.max", str(memory_bytes))
            with contextlib.suppress(SandboxError):  # no swap configured: file may be absent
                self._write("memory", "memory.swap.max", "0")
            self._write("pids", "pids.max", str(max_pids))
            return
        # Without memsw a job under its limit would swap instead of being stopped. The kernel
        # keeps memsw >= the memory limit, so raising an existing pair starts with memsw.
        order = ["memory.limit_in_bytes"]
        if (self._dirs["memory"] / "memory.memsw.limit_in_bytes").exists():
            memsw = self._read("memory", "memory.memsw.limit_in_bytes").strip()
            raising = memsw.isdigit() and int(memsw) < memory_bytes
            order = [*order, "memory.memsw.limit_in_bytes"]
            if raising:
                order.reverse()
        for name in order:
            self._write("memory", name, str(memory_bytes))
        with contextlib.suppress(SandboxError):
            self._write("memory", "memory.swappiness", "0")
        self._write("pids", "pids.max", str(max_pids))

    def set_cpu_quota(self, cpus: float) -> str | None:
        """Let the group use at most ``cpus`` CPUs' time per period; returns why it could
        not (None: enforced)."""
        if self.no_cpu is not None:
            return self.no_cpu
        quota = max(MIN_CPU_QUOTA_US, round(cpus * CPU_PERIOD_US))
        try:
            if self.version == 2:
                self._write("cpu", "cpu.max", f"{quota} {CPU_PERIOD_US}")
            else:
                self._write("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US))
                self._write("cpu", "cpu.cfs_quota_us", str(quota))
        except SandboxError as exc:
            return str(exc)
        return None

    def cpu_throttled(self) -> int | None:
        """Periods in which the CPU quota stopped the group (None: no cpu controller)."""
        if self.no_cpu is not None:
            return None
        return self._field(self._read("cpu", "cpu.stat"), "nr_throttled")

    @staticmethod
    def _field(text: str, key: str) -> int:
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
                return int(parts[1])
        return 0

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer acted inside this group."""
        if self.version == 2:
            return self._field(self._read("memory", "memory.events"), "oom_kill") > 0
        control = self._read("memory", "memory.oom_control")
        if "oom_kill " in control:
            return self._field(control, "oom_kill") > 0
        # Old kernels have no counter: under_oom or a failed charge is the best sign left.
        failcnt = self._read("memory", "memory.failcnt").strip()
        return self._field(control, "under_oom") > 0 or (failcnt.isdigit() and int(failcnt) > 0)

    def pids_limit_hit(self) -> bool:
        """Whether a fork or clone in this group was refused by ``pids.max``."""
        return self._field(self._read("pids", "pids.events"), "max") > 0

    def peak_memory_bytes(self) -> int:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        text = self._read("memory", name).strip()
        return int(text) if text.isdigit() else 0

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs_files:
            with contextlib.suppress(OSError):
                found.update(int(p) for p in procs.read_text().split())
        return found

    def kill_all(self, timeout_s: float = 5.0) -> bool:
        """SIGKILL every process in the group until none is left; False if some survive."""
        if self.version == 2:
            kill_file = self._dirs["pids"] / "cgroup.kill"
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        deadline = time.monotonic() + timeout_s
        while True:
            pids = self.pids()
            if not pids:
                return True
            if time.monotonic() > deadline:
                return False
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def close(self) -> None:
        """Kill what is left and remove the directories (best effort, never raises)."""
        self.kill_all()
        for directory in dict.fromkeys(self._dirs.values()):
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _job_parent(here: Path) -> Path:
    """The cgroup v2 directory job groups go under, given the one this process is in.

    Once the process sits in :data:`DAEMON_LEAF`, that leaf's parent. Otherwise its own
    cgroup; when that cgroup cannot enable controllers for children because it holds
    processes (EBUSY), this process moves into the leaf first, which succeeds where the
    process owns the cgroup (``Delegate=yes``) and no other process shares it.
    """
    if here.name == DAEMON_LEAF:
        return here.parent
    control = here / "cgroup.subtree_control"
    try:
        if {"memory", "pids"} <= set(control.read_text().split()):
            return here
        control.write_text("+memory +pids")
        return here
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            return here
    leaf = here / DAEMON_LEAF
    with contextlib.suppress(OSError):
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
    return here


_said_no_cpu_quota: set[str] = set()


def apply_cpu_quota(group: JobCgroup, cpus: float | None) -> bool:
    """Hold ``group`` to ``cpus`` (None: no quota). Where the host cannot, the job runs
    without one and the log says so (once per reason) rather than pretend; returns whether
    the quota holds."""
    if cpus is None:
        return False
    reason = group.set_cpu_quota(cpus)
    if reason is not None and reason not in _said_no_cpu_quota:
        _said_no_cpu_quota.add(reason)
        log.warning("jobs run without their CPU quota here: %s", reason)
    return reason is None


def _make_dir(parent: Path, name: str) -> Path:
    base = parent / _PARENT_NAME
    try:
        base.mkdir(exist_ok=True)
        job_dir = base / name
        job_dir.mkdir()
    except OSError as exc:
        raise SandboxError(f"cannot create cgroup under {parent}: {exc}") from exc
    return job_dir


def create_job_cgroup(name: str) -> JobCgroup:
    """Create the cgroup of one run; :class:`SandboxError` if the host offers none."""
    if "/" in name or name in ("", ".", ".."):
        raise SandboxError(f"bad cgroup name {name!r}")
    mounts, own = _mounts(), _own_paths()
    for mount in mounts:
        if mount.fstype == "cgroup2" and {"memory", "pids"} <= mount.controllers:
            parent = _job_parent(_inside(mount, own.get("", "/")))
            base = parent / _PARENT_NAME
            # The parent must hand the controllers down; fails harmlessly where already done.
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
            job_dir = _make_dir(parent, name)
            try:
                (base / "cgroup.subtree_control").write_text("+memory +pids")
            except OSError as exc:
                job_dir.rmdir()
                raise SandboxError(f"cgroup v2 controllers not delegated at {base}") from exc
            unified = {"memory": job_dir, "pids": job_dir}
            why: str | None = f"the cpu controller is not offered at {mount.path}"
            if "cpu" in mount.controllers:
                try:
                    with contextlib.suppress(OSError):
                        (parent / "cgroup.subtree_control").write_text("+cpu")
                    (base / "cgroup.subtree_control").write_text("+cpu")
                    unified["cpu"], why = job_dir, None
                except OSError:
                    why = f"the cpu controller is not delegated at {base}"
            return JobCgroup(2, unified, why)
    dirs: dict[str, Path] = {}
    try:
        for controller in ("memory", "pids"):
            v1 = next(
                (m for m in mounts if m.fstype == "cgroup" and controller in m.controllers),
                None,
            )
            if v1 is None:
                raise SandboxError(f"no cgroup hierarchy offers the {controller} controller")
            dirs[controller] = _make_dir(_inside(v1, own.get(controller, "/")), name)
    except SandboxError:
        JobCgroup(1, dirs).close()
        raise
    no_cpu: str | None = "no cgroup hierarchy offers the cpu controller"
    v1_cpu = next((m for m in mounts if m.fstype == "cgroup" and "cpu" in m.controllers), None)
    if v1_cpu is not None:
        try:
            dirs["cpu"] = _make_dir(_inside(v1_cpu, own.get("cpu", "/")), name)
            no_cpu = None
        except SandboxError as exc:
            no_cpu = str(exc)
    return JobCgroup(1, dirs, no_cpu)


def cgroups_unavailable_reason() -> str | None:
    """``None`` when job cgroups can be created here, else why not."""
    probe = f"probe-{os.getpid()}-{time.monotonic_ns()}"
    try:
        group = create_job_cgroup(probe)
    except (SandboxError, OSError) as exc:
        return str(exc)
    group.close()
    return None
