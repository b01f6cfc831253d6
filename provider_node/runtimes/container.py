"""The ``docker`` and ``podman`` runtimes: the job runs in an OCI container.

Both engines take the same command line apart from GPUs. The container has no network, a
read-only root filesystem, tmpfs ``/tmp`` and home, an unprivileged user with no
capabilities, the engine's own memory and pids limits, a ``/dev/shm`` sized from the job's
memory, and only the assigned GPUs (docker: ``--gpus device=...`` through the NVIDIA
container toolkit; podman: the CDI devices ``nvidia.com/gpu=N``). Inputs are mounted
read-only and outputs read-write at the same paths as under bwrap, so a job sees one layout
whichever runtime runs it; the outputs directory is the only host path the job can write.

Images are run by digest only, never pulled while a job's clock runs (``--pull never``
after an explicit, bounded pull), and refused before anything runs when their CUDA is newer
than the host's driver runs (:mod:`provider_node.runtimes.images`).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence

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
from provider_node.runtimes.images import (
    CudaVersion,
    ImageRefused,
    check_cuda,
    driver_cuda,
    image_cuda,
    parse_reference,
)
from provider_node.runtimes.model import (
    INPUTS_DIR,
    JOB_ROOT,
    OUTPUTS_DIR,
    CommandEntrypoint,
    PreparedJob,
    RunLimits,
    RunOutcome,
    RunResult,
    TorchEntrypoint,
)
from provider_node.runtimes.outputs import check_work_dir
from provider_node.runtimes.supervise import Launch, supervise

CONTAINER_RUNTIMES = ("docker", "podman")
"""Runtime names that run ``container`` jobs (any image) besides torch jobs."""

_TMPFS_OPTIONS = "rw,nosuid,nodev,size=1g,mode=1777"
MIN_SHM_BYTES = 64 << 20
PROBE_TIMEOUT_S = 60.0
ENGINE_TIMEOUT_S = 30.0
READY_MARK = "gpumarket-container-ready"
MAX_NOFILE = 1 << 16
MAX_NPROC = 1 << 14


def shm_bytes(limits: RunLimits) -> int:
    """``/dev/shm`` for a job: half its memory (it counts against it), at least 64 MiB.

    Engines default to 64 MiB, which PyTorch DataLoader workers outgrow at once.
    """
    return max(MIN_SHM_BYTES, limits.memory_bytes // 2)


def _hard_limit(which: int) -> int | None:
    hard = resource.getrlimit(which)[1]
    return None if hard == resource.RLIM_INFINITY else hard


class EngineRuntime:
    """Runs jobs with ``docker run`` or ``podman run``; limits are the engine's own. (What a
    spec asks to run in a container is :class:`protocol.spec.ContainerRuntime`.)"""

    def __init__(
        self,
        *,
        engine_name: str = "docker",
        engine: str | None = None,
        torch_image: str | None = None,
        probe_image: str | None = None,
        container_python: str = "python3",
        oci_runtime: str | None = None,
        driver: Callable[[], CudaVersion | None] = driver_cuda,
        pull: bool = True,
        pull_timeout_s: float = 1800.0,
        term_grace_s: float = 2.0,
    ) -> None:
        if engine_name not in CONTAINER_RUNTIMES:
            raise SandboxError(f"unknown container engine {engine_name!r}")
        self.name = engine_name
        self.engine = engine or shutil.which(engine_name) or engine_name
        self.torch_image = torch_image
        self.probe_image = probe_image or torch_image
        self.container_python = container_python
        self.oci_runtime = oci_runtime
        self.driver = driver
        self.pull = pull
        self.pull_timeout_s = pull_timeout_s
        self.term_grace_s = term_grace_s

    # ------------------------------------------------------------------ readiness
    def unavailable_reason(self) -> str | None:
        """Why no job can run here, found by running a real container (``None``: one ran)."""
        if shutil.which(self.engine) is None:
            return f"the {self.name} command is not installed"
        if self.probe_image is None:
            return (
                f"no image to run: set PROVIDER_CONTAINER_TORCH_IMAGE to a digest-pinned "
                f"image with {self.container_python} (it runs torch jobs and the readiness probe)"
            )
        try:
            image = str(parse_reference(self.probe_image))
        except SandboxError as exc:
            return str(exc)
        argv = [
            *self._engine_argv("run"), "--rm", "--pull", "never",
            "--network", "none", "--read-only",
            "--user", f"{SANDBOX_UID}:{SANDBOX_UID}", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--memory", str(256 << 20), "--pids-limit", "16",
            *self._ulimits(),
            "--", image, self.container_python, "-c", f"print({READY_MARK!r})",
        ]  # fmt: skip
        try:
            done = subprocess.run(argv, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
        except OSError as exc:
            return f"{self.name} cannot be started: {exc}"
        except subprocess.TimeoutExpired:
            return f"a probe container did not finish within {PROBE_TIMEOUT_S:.0f} s"
        if done.returncode != 0 or READY_MARK not in done.stdout.decode(errors="replace"):
            said = (done.stderr or done.stdout).decode(errors="replace").strip()[-400:]
            hint = ""
            if "hybrid mode" in said and self.oci_runtime != "runc":
                hint = " (runc runs there: install it, set PROVIDER_CONTAINER_OCI_RUNTIME=runc)"
            return f"a probe container of {image} failed (exit {done.returncode}): {said}{hint}"
        return None

    # ------------------------------------------------------------------ command line
    def _engine_argv(self, command: str) -> list[str]:
        if self.oci_runtime is None:
            return [self.engine, command]
        if self.name == "podman":  # a global option of podman, a run option of docker
            return [self.engine, "--runtime", self.oci_runtime, command]
        return [self.engine, command, "--runtime", self.oci_runtime]

    @staticmethod
    def _ulimits() -> list[str]:
        """RunLimits within the host's: engines' defaults can exceed them and then fail to start.

        The process count is bounded per job by ``--pids-limit``; ``nproc`` counts every
        process of the user across the host, so it is only kept from breaking the start.
        """
        args = []
        for name, which, cap in (
            ("nofile", resource.RLIMIT_NOFILE, MAX_NOFILE),
            ("nproc", resource.RLIMIT_NPROC, MAX_NPROC),
        ):
            hard = _hard_limit(which)
            value = cap if hard is None else min(hard, cap)
            args += ["--ulimit", f"{name}={value}:{value}"]
        return args

    def _gpu_args(self, gpus: Sequence[int]) -> list[str]:
        if not gpus:
            return []
        if self.name == "podman":
            return [arg for i in gpus for arg in ("--device", f"nvidia.com/gpu={i}")]
        devices = ",".join(str(i) for i in gpus)
        # The quotes keep docker from reading the comma as an option separator.
        return ["--gpus", f'"device={devices}"']

    def image_and_command(self, job: PreparedJob) -> tuple[str, list[str]]:
        """The digest-pinned image and the command ``job`` runs in it."""
        entry = job.entrypoint
        if isinstance(entry, TorchEntrypoint):
            script = entry.script if entry.script.startswith("/") else f"{JOB_ROOT}/{entry.script}"
            command = [self.container_python, "-s", LAUNCHER_IN_SANDBOX, script, *entry.args]
            image = job.image or self.torch_image
            if image is None:
                raise SandboxError(
                    "torch jobs need a torch image: set PROVIDER_CONTAINER_TORCH_IMAGE"
                )
        elif isinstance(entry, CommandEntrypoint) and entry.argv:
            if job.image is None:
                raise SandboxError("a container command needs an image")
            image, command = job.image, list(entry.argv)
        else:
            raise SandboxError(f"{self.name} cannot run entrypoint {entry!r}")
        return str(parse_reference(image)), command

    def env(self, job: PreparedJob) -> dict[str, str]:
        env = job_env(job, root=JOB_ROOT, home=HOME_IN_SANDBOX, tmp="/tmp", path="")
        del env["PATH"]  # the image's own PATH holds its python
        # Both engines renumber the granted devices from zero inside the container.
        visible = ",".join(str(i) for i in range(len(job.gpus)))
        env["CUDA_VISIBLE_DEVICES"] = env["HIP_VISIBLE_DEVICES"] = visible
        return env

    def argv(self, job: PreparedJob, name: str) -> list[str]:
        """The ``run`` command line for ``job`` in a container called ``name``."""
        image, command = self.image_and_command(job)
        limits = job.limits
        args = [
            *self._engine_argv("run"),
            "--name", name,
            "--pull", "never",
            "--network", "none",
            "--read-only",
            "--tmpfs", f"/tmp:{_TMPFS_OPTIONS}",
            "--tmpfs", f"{HOME_IN_SANDBOX}:{_TMPFS_OPTIONS}",
            "--shm-size", str(shm_bytes(limits)),
            "--memory", str(limits.memory_bytes),
            "--memory-swap", str(limits.memory_bytes),
            "--pids-limit", str(limits.max_pids),
            *self._ulimits(),
            "--user", f"{SANDBOX_UID}:{SANDBOX_UID}",
            "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--ipc", "private",
            "--init",
            "--volume", f"{job.inputs_dir.resolve()}:{JOB_ROOT}/{INPUTS_DIR}:ro",
            "--volume", f"{job.outputs_dir.resolve()}:{JOB_ROOT}/{OUTPUTS_DIR}:rw",
        ]  # fmt: skip
        if isinstance(job.entrypoint, TorchEntrypoint):
            args += ["--volume", f"{LAUNCHER.resolve()}:{LAUNCHER_IN_SANDBOX}:ro"]
        args += ["--workdir", JOB_ROOT, *self._gpu_args(job.gpus)]
        for key, value in sorted(self.env(job).items()):
            args += ["--env", f"{key}={value}"]
        return [*args, "--", image, *command]

    # ------------------------------------------------------------------ engine calls
    async def _call(
        self, *args: str, timeout_s: float = ENGINE_TIMEOUT_S
    ) -> subprocess.CompletedProcess[bytes]:
        with trio.move_on_after(timeout_s):
            try:
                return await trio.run_process(
                    self._engine_argv(args[0]) + list(args[1:]),
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
            except OSError as exc:
                raise SandboxError(f"{self.name} {args[0]} cannot be started: {exc}") from exc
        raise SandboxError(f"{self.name} {args[0]} did not answer within {timeout_s:.0f} s")

    async def image_config(self, image: str) -> Mapping[str, object]:
        """The config of ``image`` (pulled first, bounded, when absent and pulling is allowed).

        An image that cannot be had is :class:`ImageRefused` (not the job's fault: another
        provider may reach it)."""
        inspect = ("image", "inspect", "--format", "{{json .Config}}", image)
        done = await self._call(*inspect)
        if done.returncode != 0 and self.pull:
            pulled = await self._call("pull", image, timeout_s=self.pull_timeout_s)
            if pulled.returncode != 0:  # gone, private or unreachable: maybe not elsewhere
                said = pulled.stderr.decode(errors="replace").strip()[-300:]
                raise ImageRefused(f"{self.name} could not pull {image}: {said}", job_fault=False)
            done = await self._call(*inspect)
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip()[-300:]
            raise ImageRefused(f"image {image} is not on this host: {said}", job_fault=False)
        try:
            config = json.loads(done.stdout or b"null") or {}
        except ValueError as exc:
            raise SandboxError(f"{self.name} printed an unreadable config of {image}") from exc
        if not isinstance(config, dict):
            raise SandboxError(f"{self.name} printed an unreadable config of {image}")
        return config

    async def check_image(self, job: PreparedJob) -> str:
        """Refuse ``job``'s image before it runs (no digest; CUDA beyond the driver)."""
        image, _ = self.image_and_command(job)
        config = await self.image_config(image)
        if job.gpus:
            env, labels = config.get("Env"), config.get("Labels")
            needed = image_cuda(
                [str(item) for item in env] if isinstance(env, list) else None,
                {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else None,
            )
            check_cuda(image, needed, self.driver())
        return image

    @staticmethod
    def _open_outputs(job: PreparedJob) -> None:
        """Let the container's user (not the provider's) write the outputs directory."""
        if os.geteuid() == 0:
            os.chown(job.outputs_dir, SANDBOX_UID, SANDBOX_UID)
        else:  # a rootless engine maps users: only the mode can grant the write
            job.outputs_dir.chmod(0o777)

    async def run(self, job: PreparedJob) -> RunResult:
        check_work_dir(job)
        await self.check_image(job)
        self._open_outputs(job)
        name = f"gpumarket-{cgroup_name(job.job_id)}"
        launch = Launch(
            argv=self.argv(job, name),
            env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
            cwd=job.work_dir,
            outputs_dir=job.outputs_dir,
            limits=job.limits,
            term_grace_s=self.term_grace_s,
            on_output=job.on_output,
        )
        try:
            result = await supervise(launch)
            inspect = await self._call("inspect", "--format", "{{.State.OOMKilled}}", name)
            if inspect.stdout.strip() == b"true" and result.outcome is not RunOutcome.TIMEOUT:
                detail = f"memory limit of {job.limits.memory_bytes} bytes exceeded"
                return RunResult(
                    RunOutcome.OOM,
                    result.exit_code,
                    result.duration_s,
                    result.log_tail,
                    result.output_bytes,
                    detail,
                )
            return result
        finally:
            # Killing the client does not stop a container; removing it by name does.
            with trio.CancelScope(shield=True), contextlib.suppress(SandboxError):
                await self._call("rm", "--force", name)


def _factory(engine_name: str) -> Callable[..., EngineRuntime]:
    def create(**options: object) -> EngineRuntime:
        return EngineRuntime(engine_name=engine_name, **options)  # type: ignore[arg-type]

    return create


for _engine in CONTAINER_RUNTIMES:
    register_runtime(_engine, _factory(_engine))
