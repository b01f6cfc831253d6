"""A warm sandbox: bubblewrap started before its job, waiting for exactly one job on stdin.

Started, it holds its namespaces, its own cgroup (under the pool's hold limits), its own
host directories bound in (``inputs/`` read-only, ``outputs/`` writable), the device nodes
of its GPU set, and a launcher that has imported torch (and initialised CUDA on GPUs).
Nothing of any job is in its argv, its environment or its directories.

Handed a job (:meth:`WarmSlot.run`): the job's inputs are moved into the slot's inputs
directory (they appear inside at once), the cgroup takes the job's limits, and one write on
stdin carries the script, its arguments, the whole environment and the output bound; the
launcher applies them, seeds everything and runs the script exactly as a cold start does
from there on. The wall clock and the reported duration start at that write. Afterwards
the outputs directory becomes the job's, its inputs go back, and the slot is destroyed.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import trio

from protocol.errors import SandboxError
from protocol.files import remove_tree
from provider_node.runtimes.bwrap import BwrapRuntime, script_argv
from provider_node.runtimes.cgroups import JobCgroup, apply_cpu_quota, create_job_cgroup
from provider_node.runtimes.child import ChildProcess
from provider_node.runtimes.launcher import MAX_HANDOFF_BYTES, READY
from provider_node.runtimes.model import (
    INPUTS_DIR,
    OUTPUTS_DIR,
    PreparedJob,
    RunResult,
    TorchEntrypoint,
)
from provider_node.runtimes.outputs import check_work_dir
from provider_node.runtimes.supervise import Launch, park, spawn_parked, stop_process, watch

log = logging.getLogger(__name__)

_WARM_LOG_BYTES = 16 * 1024


@dataclass(frozen=True)
class SlotHold:
    """What one idle warm sandbox may hold until its job's own limits replace these."""

    memory_bytes: int = 2 << 30
    max_pids: int = 256
    ready_timeout_s: float = 180.0
    """Longest time from spawn to the launcher waiting for its job."""


class WarmSlot:
    """One warm sandbox on one GPU set (``()``: CPU only); serves one job, then is gone."""

    def __init__(self, runtime: BwrapRuntime, directory: Path, gpus: tuple[int, ...]) -> None:
        self.runtime = runtime
        self.directory = directory
        self.gpus = tuple(sorted(gpus))
        self.name = f"warm-{uuid.uuid4().hex[:12]}"
        self.proc: ChildProcess | None = None
        self.cgroup: JobCgroup | None = None
        self.ready = False
        self.warm_up_s: float | None = None
        """Seconds from spawn until the launcher was ready (once it is)."""
        self.started_with: dict[str, str] = {}
        self.warm_log = b""
        """The last output before the launcher was ready (for a slot that never got there)."""
        self._discarded = False
        self._gone = trio.Event()

    @property
    def inputs(self) -> Path:
        return self.directory / INPUTS_DIR

    @property
    def outputs(self) -> Path:
        return self.directory / OUTPUTS_DIR

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self._discarded

    def pids(self) -> set[int]:
        """Every process of the sandbox, by host pid (empty once it is gone)."""
        return self.cgroup.pids() if self.cgroup is not None else set()

    # ------------------------------------------------------------------ starting
    async def start(self, hold: SlotHold) -> None:
        """Spawn the sandbox and wait until its launcher waits for a job.

        Raises :class:`SandboxError` (after cleaning up) when it exits or is not ready in
        time; cancelled, it leaves nothing behind either.
        """
        try:
            self.inputs.mkdir(parents=True)
            self.outputs.mkdir()
            self.cgroup = create_job_cgroup(self.name)
            self.cgroup.set_limits(hold.memory_bytes, hold.max_pids)
            argv = self.runtime.warm_argv(self.inputs, self.outputs, self.gpus)
            env = self.started_with = self.runtime.warm_env(self.gpus)
            spawned = time.monotonic()
            # No output bound at spawn (the job's is unknown): the launcher sets it at hand-off.
            self.proc = await spawn_parked(
                park(argv), env, self.directory, self.cgroup, keep_stdin=True
            )
            with trio.move_on_after(hold.ready_timeout_s):
                await self._await_ready()
            if not self.ready:
                raise SandboxError(
                    f"warm sandbox not ready within {hold.ready_timeout_s:g} s: {self._log_text()}"
                )
            self.warm_up_s = time.monotonic() - spawned
        except OSError as exc:
            with trio.CancelScope(shield=True):
                await self.discard()
            raise SandboxError(f"cannot prepare a warm sandbox: {exc}") from exc
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.discard()
            raise

    async def _await_ready(self) -> None:
        assert self.proc is not None
        seen = b""
        while READY not in seen:
            try:
                data = await self.proc.stdout.receive_some(65536)
            except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
                raise SandboxError("warm sandbox discarded while warming") from exc
            if not data:
                self.warm_log = seen[-_WARM_LOG_BYTES:]
                code = await self.proc.wait()
                raise SandboxError(
                    f"warm sandbox exited ({code}) before it was ready: {self._log_text()}"
                )
            seen = (seen + data)[-_WARM_LOG_BYTES:]
        self.warm_log = seen.partition(READY)[0]
        self.ready = True

    def _log_text(self) -> str:
        return self.warm_log.decode("utf-8", "replace").strip()[-2000:] or "no output"

    # ------------------------------------------------------------------- handing
    async def run(self, job: PreparedJob) -> RunResult | None:
        """Hand ``job`` to this slot and supervise it; the slot is destroyed either way.

        None: the hand-off did not happen (the slot had died, a directory could not be
        moved), nothing of the job ran, and its work dir is as it was: start it cold.
        Raises :class:`SandboxError` for a job no runtime could run (as a cold start would).
        """
        assert self.ready and self.proc is not None and self.cgroup is not None
        moved: list[tuple[Path, Path]] = []
        try:
            check_work_dir(job)
            entry = job.entrypoint
            if not isinstance(entry, TorchEntrypoint) or tuple(sorted(job.gpus)) != self.gpus:
                raise SandboxError(f"a warm sandbox on {self.gpus} cannot run this job")
            env = self.runtime.env(job)
            message = json.dumps(
                {
                    "argv": script_argv(entry),
                    "env": env,
                    "started_with": sorted(self.started_with),
                    "fsize": job.limits.max_output_bytes + 1,
                }
            ).encode()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.discard()
            raise
        stdin = self.proc.stdin
        try:
            if len(message) > MAX_HANDOFF_BYTES:
                raise SandboxError(f"hand-off of {len(message)} bytes is too large")
            if not self.alive():
                raise SandboxError(f"the warm sandbox has exited ({self.proc.returncode})")
            for entry_path in sorted(job.inputs_dir.iterdir()):
                target = self.inputs / entry_path.name
                _rename(entry_path, target)
                moved.append((entry_path, target))
            self.cgroup.set_limits(job.limits.memory_bytes, job.limits.max_pids)
            apply_cpu_quota(self.cgroup, job.limits.cpus)
            started = time.monotonic()
            await stdin.send_all(message)
            await stdin.aclose()
        except (SandboxError, OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.warning("job %s: warm sandbox not used (%s); starting cold", job.job_id, exc)
            await self._abandon(moved)
            return None
        except BaseException:
            await self._abandon(moved)
            raise
        launch = Launch(
            argv=(),
            env=env,
            cwd=job.work_dir,
            outputs_dir=self.outputs,
            limits=job.limits,
            cgroup=self.cgroup,
            term_grace_s=self.runtime.term_grace_s,
            on_output=job.on_output,
        )
        try:
            return await watch(launch, self.proc, started)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await trio.to_thread.run_sync(self._give_back, job, moved)
                finally:
                    await self.discard()

    async def _abandon(self, moved: list[tuple[Path, Path]]) -> None:
        """Undo a hand-off that did not happen: inputs back, sandbox gone."""
        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(_move_back, moved)
            finally:
                await self.discard()

    def _give_back(self, job: PreparedJob, moved: list[tuple[Path, Path]]) -> None:
        """The slot's outputs become the job's outputs; the inputs go home."""
        try:
            _rename(self.outputs, job.outputs_dir)  # replaces the empty directory
        except OSError as exc:
            raise SandboxError(f"cannot move the job's outputs out of its sandbox: {exc}") from exc
        _move_back(moved)

    # ---------------------------------------------------------------- destroying
    async def discard(self) -> None:
        """Kill the sandbox and remove its cgroup and directories; returns once all of it
        is gone, also when another task started the discarding."""
        if self._discarded:
            with trio.CancelScope(shield=True):
                await self._gone.wait()
            return
        self._discarded = True
        self.ready = False
        with trio.CancelScope(shield=True):
            proc = self.proc
            if proc is not None:
                if proc.returncode is None:
                    await stop_process(proc, self.cgroup, 0)
                await proc.stdin.aclose()
                await proc.stdout.aclose()
            if self.cgroup is not None:
                await trio.to_thread.run_sync(self.cgroup.close)
            await trio.to_thread.run_sync(remove_tree, self.directory)
            self._gone.set()


def _rename(source: Path, target: Path) -> None:
    """Move a file or directory within one filesystem, even a directory without write
    permission (moving a directory rewrites its ``..`` entry); its mode is kept."""
    try:
        os.rename(source, target)
    except PermissionError:
        mode = source.lstat().st_mode
        if not stat.S_ISDIR(mode):
            raise
        os.chmod(source, stat.S_IMODE(mode) | stat.S_IRWXU)
        os.rename(source, target)
        os.chmod(target, stat.S_IMODE(mode))


def _move_back(moved: list[tuple[Path, Path]]) -> None:
    try:
        for original, target in reversed(moved):
            _rename(target, original)
    except OSError as exc:
        raise SandboxError(f"cannot move the job's inputs back from its sandbox: {exc}") from exc
