"""The ``docker`` runtime: the job runs in a container with the NVIDIA container toolkit.

The container has no network, a read-only root filesystem, tmpfs ``/tmp`` and home, an
unprivileged user with no capabilities, docker's own memory and pids limits, and only the
assigned GPUs (``--gpus``). Inputs are mounted read-only and outputs read-write at the same
paths as under bwrap, so a job sees one layout whichever runtime runs it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess

import trio

from protocol.errors import SandboxError
from provider_node.runtimes.base import register_runtime
from provider_node.runtimes.bwrap import (
    HOME_IN_SANDBOX,
    LAUNCHER,
    LAUNCHER_IN_SANDBOX,
    SANDBOX_UID,
    cgroup_name,
)
from provider_node.runtimes.env import job_env
from provider_node.runtimes.model import (
    INPUTS_DIR,
    JOB_ROOT,
    OUTPUTS_DIR,
    CommandEntrypoint,
    Outcome,
    PreparedJob,
    RunResult,
    TorchEntrypoint,
)
from provider_node.runtimes.outputs import check_work_dir
from provider_node.runtimes.supervise import Launch, supervise

DEFAULT_TORCH_IMAGE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
_TMPFS_OPTIONS = "rw,nosuid,nodev,size=1g,mode=1777"


class DockerRuntime:
    """Runs jobs with ``docker run``; the container's limits are docker's own."""

    name = "docker"

    def __init__(
        self,
        *,
        docker: str | None = None,
        torch_image: str = DEFAULT_TORCH_IMAGE,
        container_python: str = "python",
        term_grace_s: float = 2.0,
    ) -> None:
        self.docker = docker or shutil.which("docker") or "docker"
        self.torch_image = torch_image
        self.container_python = container_python
        self.term_grace_s = term_grace_s

    def unavailable_reason(self) -> str | None:
        if shutil.which(self.docker) is None:
            return "the docker command is not installed"
        try:
            done = subprocess.run(
                [self.docker, "info", "--format", "{{.ServerVersion}}"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"docker info failed: {exc}"
        if done.returncode != 0:
            return "no docker engine answers"
        return None

    def _image_and_command(self, job: PreparedJob) -> tuple[str, list[str]]:
        entry = job.entrypoint
        if isinstance(entry, TorchEntrypoint):
            script = entry.script if entry.script.startswith("/") else f"{JOB_ROOT}/{entry.script}"
            command = [self.container_python, "-s", LAUNCHER_IN_SANDBOX, script, *entry.args]
            return job.image or self.torch_image, command
        if isinstance(entry, CommandEntrypoint) and entry.argv:
            if job.image is None:
                raise SandboxError("a container command needs an image")
            return job.image, list(entry.argv)
        raise SandboxError(f"docker cannot run entrypoint {entry!r}")

    def env(self, job: PreparedJob) -> dict[str, str]:
        env = job_env(job, root=JOB_ROOT, home=HOME_IN_SANDBOX, tmp="/tmp", path="")
        del env["PATH"]  # the image's own PATH holds its python
        # --gpus renumbers the granted devices from zero inside the container.
        visible = ",".join(str(i) for i in range(len(job.gpus)))
        env["CUDA_VISIBLE_DEVICES"] = env["HIP_VISIBLE_DEVICES"] = visible
        return env

    def argv(self, job: PreparedJob, name: str) -> list[str]:
        """The ``docker run`` command line for ``job`` in a container called ``name``."""
        image, command = self._image_and_command(job)
        limits = job.limits
        args = [
            self.docker, "run",
            "--name", name,
            "--network", "none",
            "--read-only",
            "--tmpfs", f"/tmp:{_TMPFS_OPTIONS}",
            "--tmpfs", f"{HOME_IN_SANDBOX}:{_TMPFS_OPTIONS}",
            "--memory", str(limits.memory_bytes),
            "--memory-swap", str(limits.memory_bytes),
            "--pids-limit", str(limits.max_pids),
            "--user", f"{SANDBOX_UID}:{SANDBOX_UID}",
            "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--ipc", "private",
            "--init",
            "--volume", f"{job.inputs_dir.resolve()}:{JOB_ROOT}/{INPUTS_DIR}:ro",
            "--volume", f"{job.outputs_dir.resolve()}:{JOB_ROOT}/{OUTPUTS_DIR}:rw",
            "--volume", f"{LAUNCHER.resolve()}:{LAUNCHER_IN_SANDBOX}:ro",
            "--workdir", JOB_ROOT,
        ]  # fmt: skip
        if job.gpus:
            devices = ",".join(str(i) for i in job.gpus)
            # The quotes keep docker from reading the comma as an option separator.
            args += ["--gpus", f'"device={devices}"']
        for key, value in sorted(self.env(job).items()):
            args += ["--env", f"{key}={value}"]
        return [*args, "--", image, *command]

    async def _docker(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        with trio.move_on_after(30):
            return await trio.run_process(
                [self.docker, *args], capture_stdout=True, capture_stderr=True, check=False
            )
        raise SandboxError(f"docker {args[0]} did not answer within 30 s")

    async def run(self, job: PreparedJob) -> RunResult:
        check_work_dir(job)
        name = f"gpumarket-{cgroup_name(job.job_id)}"
        launch = Launch(
            argv=self.argv(job, name),
            env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
            cwd=job.work_dir,
            outputs_dir=job.outputs_dir,
            limits=job.limits,
            term_grace_s=self.term_grace_s,
            on_output=job.on_output,
        )
        try:
            result = await supervise(launch)
            try:
                inspect = await self._docker("inspect", "--format", "{{.State.OOMKilled}}", name)
            except OSError as exc:
                raise SandboxError(f"docker inspect failed: {exc}") from exc
            if inspect.stdout.strip() == b"true" and result.outcome is not Outcome.TIMEOUT:
                detail = f"memory limit of {job.limits.memory_bytes} bytes exceeded"
                return RunResult(
                    Outcome.OOM,
                    result.exit_code,
                    result.duration_s,
                    result.log_tail,
                    result.output_bytes,
                    detail,
                )
            return result
        finally:
            # Killing the client does not stop a container; removing it by name does.
            with trio.CancelScope(shield=True), contextlib.suppress(SandboxError, OSError):
                await self._docker("rm", "--force", name)


register_runtime("docker", DockerRuntime)
