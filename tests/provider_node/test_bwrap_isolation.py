"""What a job inside bwrap must not be able to do, checked with real bubblewrap."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider_node.runtimes import BwrapRuntime, RunLimits, RunOutcome
from tests.provider_node.conftest import MakeJob

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RUNTIME = BwrapRuntime(term_grace_s=0.5)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server
    finally:
        server.close()


async def test_no_network(listener: socket.socket, make_job: MakeJob) -> None:
    port = listener.getsockname()[1]
    # The listener really answers from the host, so a refusal inside means isolation.
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        conn, _ = listener.accept()
        conn.close()
    job = make_job(
        """
        import socket, sys
        port = int(sys.argv[1])
        for host in ("127.0.0.1", "10.0.0.1", "1.1.1.1"):
            try:
                socket.create_connection((host, port), timeout=2).close()
            except OSError as exc:
                print(host, "blocked", type(exc).__name__, exc.errno)
            else:
                print(host, "CONNECTED")
        """,
        args=(str(port),),
    )
    result = await RUNTIME.run(job)
    assert result.outcome is RunOutcome.OK, result
    assert "CONNECTED" not in result.log_tail
    assert result.log_tail.count("blocked") == 3
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.accept()


async def test_cannot_write_outside_outputs(tmp_path: Path, make_job: MakeJob) -> None:
    target = tmp_path / "escaped.txt"
    job = make_job(
        """
        import os, sys
        targets = sys.argv[1:] + [
            "/usr/escaped.txt", "/etc/escaped.txt", "/escaped.txt", "/job/escaped.txt",
            "inputs/code/escaped.txt", os.path.join(sys.prefix, "escaped.txt"),
        ]
        for path in targets:
            try:
                with open(path, "w") as fh:
                    fh.write("x")
            except OSError as exc:
                print("refused", path, exc.errno)
            else:
                print("WROTE", path)
        """,
        args=(str(target), str(Path.home() / "escaped.txt")),
    )
    result = await RUNTIME.run(job)
    assert result.outcome is RunOutcome.OK, result
    assert "WROTE" not in result.log_tail, result.log_tail
    assert result.log_tail.count("refused") == 8
    assert not target.exists()
    assert not (job.inputs_dir / "code" / "escaped.txt").exists()
    assert not (job.work_dir / "escaped.txt").exists()


async def test_cannot_read_provider_keystore_or_home(
    tmp_path: Path, make_job: MakeJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "provider-home"
    keystore = home / ".gpumarket" / "keystore.json"
    keystore.parent.mkdir(parents=True)
    keystore.write_text('{"crypto": "very-secret-provider-key"}')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PROVIDER_KEYSTORE_PASSWORD", "hunter2")
    job = make_job(
        """
        import os, sys
        print("home is", os.environ["HOME"], sorted(os.listdir(os.environ["HOME"])))
        print("password" if "PROVIDER_KEYSTORE_PASSWORD" in os.environ else "no password")
        root = sorted(os.listdir("/root")) if os.path.isdir("/root") else []
        print("root home holds", root)
        for path in (sys.argv[1], os.path.expanduser("~/.gpumarket/keystore.json"), "/home"):
            try:
                print("READ", path, open(path).read() if os.path.isfile(path) else os.listdir(path))
            except OSError as exc:
                print("hidden", path, exc.errno)
        """,
        args=(str(keystore),),
    )
    result = await RUNTIME.run(job)
    assert result.outcome is RunOutcome.OK, result
    assert "very-secret-provider-key" not in result.log_tail
    assert "READ /home ['job']" in result.log_tail  # only the job's own, empty home
    assert result.log_tail.count("READ") == 1
    assert "home is /home/job []" in result.log_tail
    assert "no password" in result.log_tail
    assert result.log_tail.count("hidden") == 2  # the keystore by both names
    # /root shows at most the directories that lead to the Python installation.
    python_dirs = sorted(
        {
            Path(p).relative_to("/root").parts[0]
            for p in (sys.prefix, sys.base_prefix)
            if Path(p).is_relative_to("/root")
        }
    )
    assert f"root home holds {python_dirs}" in result.log_tail


async def test_fork_bomb_is_bounded_and_runtime_keeps_serving(make_job: MakeJob) -> None:
    limits = RunLimits(wall_time_s=20, memory_bytes=512 << 20, max_pids=64, max_output_bytes=1024)
    job = make_job(
        """
        import os, sys, time
        made = 0
        try:
            for _ in range(2000):  # bounded even if the limit were missing
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                made += 1
        except OSError as exc:
            print("fork refused after", made, exc.errno, flush=True)
            sys.exit(3)
        print("FORKED ALL", made)
        """,
        limits=limits,
    )
    result = await RUNTIME.run(job)
    assert result.outcome is RunOutcome.PIDS_LIMIT, result
    assert "fork refused after" in result.log_tail
    made = int(result.log_tail.split("fork refused after")[1].split()[0])
    assert made < 64
    assert result.duration_s < 15  # the sleeping children were killed with the job
    assert subprocess.run(["true"], check=False).returncode == 0
    after = await RUNTIME.run(make_job("print('still serving')"))
    assert after.outcome is RunOutcome.OK and "still serving" in after.log_tail


async def test_oom_then_timeout_then_normal_job(make_job: MakeJob) -> None:
    oom = await RUNTIME.run(
        make_job(
            "block = b'\\x01' * (1 << 30)",
            limits=RunLimits(
                wall_time_s=60, memory_bytes=256 << 20, max_pids=64, max_output_bytes=1
            ),
        )
    )
    assert oom.outcome is RunOutcome.OOM
    slow = await RUNTIME.run(
        make_job(
            "import time\ntime.sleep(30)",
            limits=RunLimits(
                wall_time_s=2, memory_bytes=256 << 20, max_pids=64, max_output_bytes=1
            ),
        )
    )
    assert slow.outcome is RunOutcome.TIMEOUT
    normal = await RUNTIME.run(make_job("open('outputs/ok', 'w').write('ok')"))
    assert normal.outcome is RunOutcome.OK
    assert normal.output_bytes == 2


async def test_sandbox_view_is_minimal(make_job: MakeJob) -> None:
    job = make_job(
        """
        import os
        print("uid", os.getuid())
        print("dev", sorted(os.listdir("/dev")))
        print("root", sorted(os.listdir("/")))
        print("pid", os.getpid() < 10)
        print("sys", os.path.exists("/sys/class"))
        """
    )
    result = await RUNTIME.run(job)
    assert result.outcome is RunOutcome.OK, result
    assert "uid 65534" in result.log_tail
    assert "nvidia" not in result.log_tail
    assert "pid True" in result.log_tail  # own pid namespace
    assert "sys False" in result.log_tail
    root_line = next(line for line in result.log_tail.splitlines() if line.startswith("root"))
    for name in ("home", "job", "tmp", "usr", "proc", "dev", "gpumarket"):
        assert f"'{name}'" in root_line
    for name in ("sys", "var", "srv", "mnt", "boot"):
        assert f"'{name}'" not in root_line
