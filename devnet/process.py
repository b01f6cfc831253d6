"""Start and stop the devnet's child processes.

Each process runs in its own session (so its process group id equals its PID), writes
stdout and stderr to one log file, and is stopped by signalling that whole group: SIGTERM
first, SIGKILL after a grace period. Nothing else on the machine is ever signalled, and a
record of what was started survives the starter (see ``protocol.devnet_state``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from devnet.netns import Host
from protocol.devnet_state import ProcessRecord
from protocol.errors import DevnetError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def require_free_port(port: int, what: str, host: str = "127.0.0.1") -> None:
    if not port_is_free(port, host):
        raise DevnetError(f"{what}: port {host}:{port} is already in use")


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log: Path,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    host: Host | None = None,
) -> ProcessRecord:
    """Start ``argv`` detached in its own session, logging to ``log``; with ``host``,
    inside that host's network namespace (an isolated devnet)."""
    exe = Path(argv[0])
    if not exe.exists():
        raise DevnetError(
            f"{name}: {exe} not found; run `make bootstrap` (or `npm install`) to install it"
        )
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            proc = subprocess.Popen(
                host.argv(argv) if host is not None else list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        except OSError as exc:
            raise DevnetError(f"{name}: cannot start {argv[0]}: {exc}") from exc
    return ProcessRecord(name=name, pid=proc.pid, pgid=proc.pid, log=str(log), workdir=str(workdir))


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state letter follows the parenthesised command name.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A group whose only members are zombies counts as stopped.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _belongs(record: ProcessRecord) -> bool:
    """Guard against PID reuse: the group leader must still run from our workdir."""
    try:
        cwd = os.readlink(f"/proc/{record.pid}/cwd")
    except OSError:
        # Leader gone; surviving group members are still ours (same pgid, same session).
        return True
    return Path(cwd).resolve() == Path(record.workdir).resolve()


def stop(record: ProcessRecord, *, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``grace`` seconds."""
    if not _group_alive(record.pgid) or not _belongs(record):
        _reap(record.pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not _group_alive(record.pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not _group_alive(record.pgid):
            return
        time.sleep(0.05)
    raise DevnetError(f"{record.name} (pid {record.pid}) did not stop after SIGKILL")


def log_tail(path: str | Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(
    record: ProcessRecord,
    probe: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
) -> None:
    """Poll ``probe`` until it is true; stop the process and raise on exit or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        _reap(record.pid)
        if not is_alive(record.pid):
            stop(record)
            raise DevnetError(
                f"{what} exited before it became ready; last log lines "
                f"({record.log}):\n{log_tail(record.log)}"
            )
        if time.monotonic() >= deadline:
            stop(record)
            raise DevnetError(
                f"{what} did not become ready within {timeout:g}s; last log lines "
                f"({record.log}):\n{log_tail(record.log)}"
            )
        time.sleep(interval)
