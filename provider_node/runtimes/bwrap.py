"""The ``bwrap`` runtime: bubblewrap namespaces plus a per-job cgroup.

Inside, a job sees a read-only system (``/usr`` and friends, a few files of ``/etc``, the
Python installation that runs torch), its inputs read-only under ``/job/inputs``, a writable
``/job/outputs``, a private ``/tmp`` and home, a fresh ``/proc``, a minimal ``/dev`` and no
network. A job assigned GPUs sees only their device nodes and the shared control nodes
(:mod:`provider_node.runtimes.gpudevices`), however it sets its environment. It runs as an
unprivileged uid with every capability dropped, in its own session, and dies with the
provider. Its cgroup bounds memory, processes and, where the host offers it, CPU time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from protocol.errors import SandboxError
from provider_node.runtimes.base import register_runtime
from provider_node.runtimes.cgroups import (
    apply_cpu_quota,
    cgroups_unavailable_reason,
    create_job_cgroup,
)
from provider_node.runtimes.env import job_env, sandbox_env
from provider_node.runtimes.gpudevices import GpuDevices
from provider_node.runtimes.launcher import WARM_FLAG
from provider_node.runtimes.model import (
    INPUTS_DIR,
    JOB_ROOT,
    OUTPUTS_DIR,
    CommandEntrypoint,
    PreparedJob,
    RunResult,
    TorchEntrypoint,
)
from provider_node.runtimes.outputs import check_work_dir
from provider_node.runtimes.supervise import Launch, supervise

LAUNCHER = Path(__file__).with_name("launcher.py")
LAUNCHER_IN_SANDBOX = "/gpumarket/launcher.py"
HOME_IN_SANDBOX = "/home/job"
SANDBOX_UID = 65534

_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/nsswitch.conf",
    "/etc/localtime",
)


def _python_prefixes() -> list[str]:
    candidates = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
    }
    return sorted(p for p in candidates if p)


def _covered(path: str, bound: list[str]) -> bool:
    return any(path == b or path.startswith(b.rstrip("/") + "/") for b in bound)


class BwrapRuntime:
    """Runs jobs with bubblewrap; memory and pids limits come from a job cgroup."""

    name = "bwrap"

    def __init__(
        self,
        *,
        bwrap: str | None = None,
        python: str = sys.executable,
        extra_ro_paths: tuple[str, ...] = (),
        term_grace_s: float = 2.0,
        devices: GpuDevices | None = None,
    ) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        self.python = python
        self.extra_ro_paths = extra_ro_paths
        self.term_grace_s = term_grace_s
        self.devices = devices or GpuDevices()
        self._probed: tuple[str | None] | None = None  # (reason,) once probed

    def unavailable_reason(self) -> str | None:
        """Checks by doing: bwrap must start a namespaced ``true`` and cgroups must be creatable."""
        if self._probed is None:
            self._probed = (self._probe(),)
        return self._probed[0]

    def _probe(self) -> str | None:
        if shutil.which(self.bwrap) is None:
            return "bubblewrap (bwrap) is not installed"
        argv = [
            self.bwrap, "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID),
            "--die-with-parent", "--cap-drop", "ALL", *self._system_args(),
            "--proc", "/proc", "--dev", "/dev", "--", "true",
        ]  # fmt: skip
        try:
            done = subprocess.run(argv, capture_output=True, timeout=20, check=False, env={})
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap cannot start: {exc}"
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace").strip()
            return f"bwrap cannot create its namespaces: {stderr}"
        return cgroups_unavailable_reason()

    def _system_args(self) -> list[str]:
        args: list[str] = []
        bound: list[str] = []
        for path in _SYSTEM_PATHS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
                bound.append(path)
        for path in _ETC_FILES:
            args += ["--ro-bind-try", path, path]
        for path in (*_python_prefixes(), *self.extra_ro_paths):
            real = os.path.realpath(path)
            if not os.path.isdir(real) or _covered(real, bound):
                continue
            args += ["--ro-bind", real, real]
            bound.append(real)
            if real != path and not _covered(path, bound):
                args += ["--symlink", real, path]
        return args

    def _gpu_args(self, gpus: tuple[int, ...]) -> list[str]:
        if not gpus:
            return []
        args: list[str] = []
        for node, inside in self.devices.binds(gpus):
            args += ["--dev-bind", node, inside]
        # CUDA and ROCm user-space libraries read PCI topology and driver facts from /sys.
        args += ["--ro-bind-try", "/sys", "/sys"]
        return args

    def command(self, job: PreparedJob) -> list[str]:
        """The job's argv inside the sandbox."""
        entry = job.entrypoint
        if isinstance(entry, TorchEntrypoint):
            return [self.python, "-s", LAUNCHER_IN_SANDBOX, *script_argv(entry)]
        if isinstance(entry, CommandEntrypoint):
            if not entry.argv:
                raise SandboxError("empty command")
            return list(entry.argv)
        raise SandboxError(f"bwrap cannot run entrypoint {entry!r}")

    def argv(self, job: PreparedJob) -> list[str]:
        """The full bubblewrap command line for ``job`` (environment is passed separately)."""
        return self.sandbox_argv(job.inputs_dir, job.outputs_dir, job.gpus, self.command(job))

    def warm_argv(self, inputs: Path, outputs: Path, gpus: tuple[int, ...]) -> list[str]:
        """A sandbox like :meth:`argv`'s whose launcher waits for its job on stdin."""
        command = [self.python, "-s", LAUNCHER_IN_SANDBOX, WARM_FLAG]
        return self.sandbox_argv(inputs, outputs, gpus, command)

    def sandbox_argv(
        self, inputs: Path, outputs: Path, gpus: tuple[int, ...], command: list[str]
    ) -> list[str]:
        """bubblewrap running ``command`` over these inputs and outputs and GPU devices."""
        inputs, outputs = inputs.resolve(), outputs.resolve()
        args = [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID),
            "--hostname", "job",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            # The private /tmp comes first: a Python prefix bound below may live under /tmp
            # (a checkout or venv there), and a later tmpfs would hide it.
            "--tmpfs", "/tmp",
            *self._system_args(),
            "--proc", "/proc",
            "--dev", "/dev",
            *self._gpu_args(gpus),
            "--tmpfs", HOME_IN_SANDBOX,
            "--ro-bind", str(LAUNCHER.resolve()), LAUNCHER_IN_SANDBOX,
            "--dir", JOB_ROOT,
            "--ro-bind", str(inputs), f"{JOB_ROOT}/{INPUTS_DIR}",
            "--bind", str(outputs), f"{JOB_ROOT}/{OUTPUTS_DIR}",
            "--remount-ro", "/",
            "--chdir", JOB_ROOT,
            "--",
            *command,
        ]  # fmt: skip
        return args

    @property
    def _path(self) -> str:
        return f"{os.path.dirname(self.python)}:/usr/local/bin:/usr/bin:/bin"

    def env(self, job: PreparedJob) -> dict[str, str]:
        return job_env(
            job,
            root=JOB_ROOT,
            home=HOME_IN_SANDBOX,
            tmp="/tmp",
            path=self._path,
            cuda_visible=self.devices.visible(job.gpus),
        )

    def warm_env(self, gpus: tuple[int, ...]) -> dict[str, str]:
        """The environment of a warm sandbox on ``gpus``: nothing of any job in it."""
        return sandbox_env(
            gpus,
            root=JOB_ROOT,
            home=HOME_IN_SANDBOX,
            tmp="/tmp",
            path=self._path,
            cuda_visible=self.devices.visible(gpus),
        )

    async def run(self, job: PreparedJob) -> RunResult:
        check_work_dir(job)
        argv, env = self.argv(job), self.env(job)
        group = create_job_cgroup(cgroup_name(job.job_id))
        try:
            group.set_limits(job.limits.memory_bytes, job.limits.max_pids)
            apply_cpu_quota(group, job.limits.cpus)
            launch = Launch(
                argv=argv,
                env=env,
                cwd=job.work_dir,
                outputs_dir=job.outputs_dir,
                limits=job.limits,
                cgroup=group,
                term_grace_s=self.term_grace_s,
                on_output=job.on_output,
            )
            return await supervise(launch)
        finally:
            group.close()


def script_argv(entry: TorchEntrypoint) -> list[str]:
    """The script and its arguments as the launcher gets them inside the sandbox."""
    script = entry.script if entry.script.startswith("/") else f"{JOB_ROOT}/{entry.script}"
    return [script, *entry.args]


def cgroup_name(job_id: str) -> str:
    """A unique, path-safe cgroup name for one run of ``job_id``."""
    safe = "".join(c for c in job_id if c.isalnum() or c in "-_")[:40] or "anon"
    return f"job-{safe}-{uuid.uuid4().hex[:8]}"


register_runtime("bwrap", BwrapRuntime)
