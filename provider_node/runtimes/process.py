"""The ``process`` runtime: the job runs as a plain child process, with no isolation.

For development only: the job can read and write whatever the provider can, and reach the
network. It is refused unless constructed with ``unsafe=True`` (the provider's
``--unsafe-process-runtime`` flag). Wall time and output bounds still apply, and memory and
process limits too where job cgroups can be created.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from protocol.errors import SandboxError
from provider_node.runtimes.base import register_runtime
from provider_node.runtimes.bwrap import LAUNCHER, cgroup_name
from provider_node.runtimes.cgroups import JobCgroup, apply_cpu_quota, create_job_cgroup
from provider_node.runtimes.env import job_env
from provider_node.runtimes.model import (
    CommandEntrypoint,
    PreparedJob,
    RunResult,
    TorchEntrypoint,
)
from provider_node.runtimes.outputs import check_work_dir
from provider_node.runtimes.supervise import Launch, supervise


class ProcessRuntime:
    """Runs jobs unsandboxed; only with ``unsafe=True``."""

    name = "process"

    def __init__(
        self, *, unsafe: bool = False, python: str = sys.executable, term_grace_s: float = 2.0
    ) -> None:
        self.unsafe = unsafe
        self.python = python
        self.term_grace_s = term_grace_s

    def unavailable_reason(self) -> str | None:
        if not self.unsafe:
            return "the process runtime has no isolation and runs only when asked for as unsafe"
        return None

    def command(self, job: PreparedJob) -> list[str]:
        entry = job.entrypoint
        if isinstance(entry, TorchEntrypoint):
            script = job.work_dir / entry.script
            return [self.python, "-s", str(LAUNCHER), str(script), *entry.args]
        if isinstance(entry, CommandEntrypoint) and entry.argv:
            return list(entry.argv)
        raise SandboxError(f"process runtime cannot run entrypoint {entry!r}")

    async def run(self, job: PreparedJob) -> RunResult:
        reason = self.unavailable_reason()
        if reason is not None:
            raise SandboxError(reason)
        check_work_dir(job)
        root = str(job.work_dir.resolve())
        with tempfile.TemporaryDirectory(prefix="gpumarket-job-") as scratch:
            home, tmp = Path(scratch, "home"), Path(scratch, "tmp")
            home.mkdir()
            tmp.mkdir()
            path = f"{os.path.dirname(self.python)}:/usr/local/bin:/usr/bin:/bin"
            env = job_env(job, root=root, home=str(home), tmp=str(tmp), path=path)
            group: JobCgroup | None = None
            with contextlib.suppress(SandboxError):  # no cgroups: time and output bounds only
                group = create_job_cgroup(cgroup_name(job.job_id))
            try:
                if group is not None:
                    group.set_limits(job.limits.memory_bytes, job.limits.max_pids)
                    apply_cpu_quota(group, job.limits.cpus)
                launch = Launch(
                    argv=self.command(job),
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
                if group is not None:
                    group.close()


register_runtime("process", ProcessRuntime)
