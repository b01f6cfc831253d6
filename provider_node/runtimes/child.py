"""Sandbox processes started from the event loop's own thread.

``trio.lowlevel.open_process`` forks from a worker thread, and a worker thread exits after
ten idle seconds. bubblewrap's ``--die-with-parent`` is a parent-death signal, which Linux
sends when the *thread* that forked the process exits, so a sandbox started that way is
killed ten seconds after its thread falls idle: a long job whose thread was not reused, and
any warm sandbox waiting for its job. Forking from the thread that runs the event loop ties
the sandbox to the provider's life, as intended. The fork (vfork and exec) is brief enough
to do inline.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio


class ChildProcess:
    """A started child with a pipe to its stdin and one from its stdout and stderr."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdin: trio.lowlevel.FdStream,
        stdout: trio.lowlevel.FdStream,
    ) -> None:
        self._popen = popen
        self.stdin = stdin
        self.stdout = stdout

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: killed by that signal), None while it runs."""
        return self._popen.poll()

    def poll(self) -> int | None:
        return self._popen.poll()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._popen.kill()

    async def wait(self) -> int:
        """Wait for the child to exit (several tasks may wait at once); its exit status."""
        while (code := self._popen.poll()) is None:
            # Not reaped yet, so the pid is still this child's: the pidfd cannot name another.
            try:
                pidfd = os.pidfd_open(self._popen.pid)
            except ProcessLookupError:
                continue
            except (AttributeError, OSError):  # no pidfds here: poll
                await trio.sleep(0.05)
                continue
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
        return code


def start_child(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> ChildProcess:
    """Start ``argv`` in a new session, from the calling (event loop) thread."""
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=stdin_read,
            stdout=stdout_write,
            stderr=stdout_write,
            env=dict(env),
            cwd=str(cwd),
            start_new_session=True,
        )
    except BaseException:
        os.close(stdin_write)
        os.close(stdout_read)
        raise
    finally:
        os.close(stdin_read)
        os.close(stdout_write)
    return ChildProcess(
        popen, trio.lowlevel.FdStream(stdin_write), trio.lowlevel.FdStream(stdout_read)
    )
