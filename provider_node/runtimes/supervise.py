"""Run one sandbox command to completion under the job's limits and classify how it ended.

Every runtime builds an argv; this module does the rest the same way for all of them:
the first process is parked on a pipe until it sits in the job's cgroup, so nothing the job
starts escapes the limits (:func:`spawn_parked`); then (:func:`watch`) the wall clock is
enforced with SIGTERM then SIGKILL to the whole process group and cgroup, outputs are polled
while the job runs, and only the last bytes of its combined stdout/stderr are kept (all of
it is handed to the optional live output hook). A warm sandbox is spawned long before its
job and watched from hand-off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from protocol.errors import SandboxError
from provider_node.runtimes.cgroups import JobCgroup
from provider_node.runtimes.child import ChildProcess, start_child
from provider_node.runtimes.model import OutputSink, RunLimits, RunOutcome, RunResult
from provider_node.runtimes.outputs import OutputScan, scan_outputs

log = logging.getLogger(__name__)

# Parks until the parent has placed it in the cgroup and written a line; EOF means abort.
_PARK = 'read -r go || exit 125; [ "$go" = go ] || exit 125; exec "$@"'


@dataclass(frozen=True)
class Launch:
    """A fully built command line and the surroundings it needs on the host."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    outputs_dir: Path
    limits: RunLimits
    cgroup: JobCgroup | None = None
    term_grace_s: float = 2.0
    poll_interval_s: float = 0.25
    on_output: OutputSink | None = None
    """Handed each piece of output as it is read (see :data:`OutputSink`)."""


class _Tail:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: deque[bytes] = deque()
        self.size = 0

    def add(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        while self.chunks and self.size - len(self.chunks[0]) >= self.limit:
            self.size -= len(self.chunks.popleft())

    def text(self) -> str:
        data = b"".join(self.chunks)
        return data[-self.limit :].decode("utf-8", "replace") if self.limit else ""


def park(argv: Sequence[str]) -> list[str]:
    """``argv`` behind the parking shell: it execs only after ``go`` arrives on stdin."""
    return ["/bin/sh", "-c", _PARK, "sh", *argv]


def _wrap(launch: Launch) -> list[str]:
    argv = list(launch.argv)
    prlimit = shutil.which("prlimit")
    if prlimit is not None:
        # One byte past the bound, so a job cut off by it is seen as too large, not as done.
        argv = [prlimit, f"--fsize={launch.limits.max_output_bytes + 1}", "--", *argv]
    return park(argv)


def _signal_all(proc: ChildProcess, group: JobCgroup | None, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    if group is not None:
        for pid in group.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


async def stop_process(proc: ChildProcess, group: JobCgroup | None, grace_s: float) -> None:
    """SIGTERM the process group and cgroup, SIGKILL after ``grace_s``, then reap."""
    _signal_all(proc, group, signal.SIGTERM)
    with trio.move_on_after(grace_s):
        await proc.wait()
    _signal_all(proc, group, signal.SIGKILL)
    if group is not None:
        await trio.to_thread.run_sync(group.kill_all)
    with trio.move_on_after(5):
        await proc.wait()


async def spawn_parked(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    cgroup: JobCgroup | None,
    *,
    keep_stdin: bool = False,
) -> ChildProcess:
    """Start ``argv`` (already behind :func:`park`), place it in ``cgroup``, then release it.

    With ``keep_stdin`` the pipe stays open after ``go``, so more can be written to what
    the parked command execs into. Raises :class:`SandboxError`, leaving nothing running.
    """
    try:
        proc = start_child(argv, env, cwd)
    except OSError as exc:
        raise SandboxError(f"cannot start: {exc}") from exc
    try:
        if cgroup is not None:
            for procs in cgroup.procs_files:
                procs.write_text(str(proc.pid))
        await proc.stdin.send_all(b"go\n")
        if not keep_stdin:
            await proc.stdin.aclose()
    except (OSError, trio.BrokenResourceError) as exc:
        with trio.CancelScope(shield=True):
            await stop_process(proc, cgroup, 0)
            await proc.stdout.aclose()
            await proc.stdin.aclose()
        raise SandboxError(f"cannot place the job in its cgroup: {exc}") from exc
    return proc


async def supervise(launch: Launch) -> RunResult:
    """Run ``launch`` once; never raises for anything the job does, only for the host."""
    started = time.monotonic()
    try:
        proc = await spawn_parked(_wrap(launch), launch.env, launch.cwd, launch.cgroup)
    except SandboxError as exc:
        return RunResult(RunOutcome.SANDBOX_ERROR, None, 0.0, "", detail=str(exc))
    return await watch(launch, proc, started)


async def watch(launch: Launch, proc: ChildProcess, started: float) -> RunResult:
    """Supervise the running ``proc`` under ``launch``'s limits until it ends, and classify.

    The wall clock starts now; ``started`` (a ``time.monotonic()`` reading) is where the
    reported duration starts. Whatever is left in the process group and cgroup is killed.
    """
    limits = launch.limits
    tail = _Tail(limits.log_tail_bytes)
    timed_out = False
    refused: OutputScan | None = None
    stdout = proc.stdout

    sink = launch.on_output

    async def read_log() -> None:
        nonlocal sink
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await stdout.receive_some(65536):
                tail.add(data)
                if sink is not None:
                    try:
                        sink(data)
                    except Exception:  # a broken observer must not stop the job or its tail
                        log.exception("the live output hook failed; not calling it again")
                        sink = None

    async def watch_outputs(job_scope: trio.CancelScope, own: trio.CancelScope) -> None:
        nonlocal refused
        with own:
            while True:
                await trio.sleep(launch.poll_interval_s)
                scan = await trio.to_thread.run_sync(
                    scan_outputs, launch.outputs_dir, limits.max_output_bytes
                )
                if scan.too_large:
                    refused = scan
                    job_scope.cancel()
                    return

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_log, name="job log reader")
            job_scope, watcher = trio.CancelScope(), trio.CancelScope()
            nursery.start_soon(watch_outputs, job_scope, watcher, name="job output watcher")
            with job_scope:
                with trio.move_on_after(limits.wall_time_s) as clock:
                    await proc.wait()
                timed_out = clock.cancelled_caught
            watcher.cancel()
            if proc.returncode is None:
                await stop_process(proc, launch.cgroup, launch.term_grace_s)
            # Whatever the job left behind (daemons, a fork bomb's children) goes now.
            if launch.cgroup is not None:
                await trio.to_thread.run_sync(launch.cgroup.kill_all)
            else:
                _signal_all(proc, None, signal.SIGKILL)
            nursery.cancel_scope.deadline = trio.current_time() + 2  # bounded log drain
    finally:
        if proc.returncode is None:  # cancelled from outside: leave nothing running
            with trio.CancelScope(shield=True):
                await stop_process(proc, launch.cgroup, 0)
        await stdout.aclose()
        await proc.stdin.aclose()

    duration = time.monotonic() - started
    final = await trio.to_thread.run_sync(scan_outputs, launch.outputs_dir, limits.max_output_bytes)
    return _classify(launch, proc.returncode, timed_out, refused or final, duration, tail)


def _classify(
    launch: Launch,
    returncode: int | None,
    timed_out: bool,
    scan: OutputScan,
    duration: float,
    tail: _Tail,
) -> RunResult:
    group, limits = launch.cgroup, launch.limits
    code = returncode
    if code is not None and code < 0:  # killed by a signal before bwrap could report it
        code = 128 - code

    throttled = None
    if group is not None and limits.cpus is not None:
        throttled = group.cpu_throttled()

    def result(outcome: RunOutcome, detail: str = "") -> RunResult:
        return RunResult(outcome, code, duration, tail.text(), scan.total_bytes, detail, throttled)

    if timed_out:
        return result(RunOutcome.TIMEOUT, f"wall time of {limits.wall_time_s:g} s exceeded")
    if group is not None and group.oom_killed():
        return result(RunOutcome.OOM, f"memory limit of {limits.memory_bytes} bytes exceeded")
    if scan.too_large or code == 128 + signal.SIGXFSZ:
        return result(RunOutcome.OUTPUT_TOO_LARGE, scan.problem or "a file hit the output bound")
    if scan.problem is not None:
        return result(RunOutcome.OUTPUT_REFUSED, scan.problem)
    if code != 0 and group is not None and group.pids_limit_hit():
        return result(RunOutcome.PIDS_LIMIT, f"process limit of {limits.max_pids} reached")
    if code == 0:
        return result(RunOutcome.OK)
    if code is not None and code > 128 and code - 128 in (signal.SIGKILL, signal.SIGTERM):
        return result(RunOutcome.KILLED, f"killed by signal {code - 128}")
    if code is None:
        raise SandboxError("the job process has no exit status after it was reaped")
    return result(RunOutcome.NONZERO_EXIT, f"exit status {code}")
