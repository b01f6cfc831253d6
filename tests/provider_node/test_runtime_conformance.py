"""Behaviour every runtime that actually runs jobs must share: bwrap and process (unsafe)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from provider_node.runtimes import (
    BwrapRuntime,
    ProcessRuntime,
    RunLimits,
    RunOutcome,
    Runtime,
)
from provider_node.runtimes.bwrap import cgroup_name
from tests.provider_node.conftest import MakeJob

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(params=["bwrap", "process"])
def runtime(request: pytest.FixtureRequest) -> Runtime:
    if request.param == "bwrap":
        return BwrapRuntime(term_grace_s=0.5)
    return ProcessRuntime(unsafe=True, term_grace_s=0.5)


async def test_ok_run_writes_outputs_and_env(runtime: Runtime, make_job: MakeJob) -> None:
    job = make_job(
        """
        import os, pathlib
        out = pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"])
        (out / "seed.txt").write_text(os.environ["GPUMARKET_SEED"])
        print("inputs at", os.environ["GPUMARKET_INPUT_DIR"])
        print("hash seed", os.environ["PYTHONHASHSEED"], os.environ["CUBLAS_WORKSPACE_CONFIG"])
        print("visible", repr(os.environ["CUDA_VISIBLE_DEVICES"]))
        """,
        seed=2**40 + 5,
        env={"JOB_FLAG": "on"},
    )
    result = await runtime.run(job)
    assert result.outcome is RunOutcome.OK, result
    assert result.exit_code == 0
    assert (job.outputs_dir / "seed.txt").read_text() == str(2**40 + 5)
    assert result.output_bytes == len(str(2**40 + 5))
    assert "hash seed 0 :4096:8" in result.log_tail  # one value for every job
    assert "visible ''" in result.log_tail


async def test_nonzero_exit_keeps_log_tail(runtime: Runtime, make_job: MakeJob) -> None:
    limits = RunLimits(
        wall_time_s=30,
        memory_bytes=256 << 20,
        max_pids=64,
        max_output_bytes=1024,
        log_tail_bytes=100,
    )
    job = make_job("import sys\nprint('x' * 5000)\nprint('last words')\nsys.exit(4)", limits=limits)
    result = await runtime.run(job)
    assert result.outcome is RunOutcome.NONZERO_EXIT
    assert result.exit_code == 4
    assert result.log_tail.endswith("last words\n")
    assert len(result.log_tail) <= 100


async def test_live_output_hook_sees_everything_as_it_comes(
    runtime: Runtime, make_job: MakeJob
) -> None:
    limits = RunLimits(
        wall_time_s=30,
        memory_bytes=256 << 20,
        max_pids=64,
        max_output_bytes=1024,
        log_tail_bytes=64,
    )
    job = make_job(
        """
        import time
        for i in range(4):
            print("line", i, "x" * 40)
            time.sleep(0.2)
        """,
        limits=limits,
    )
    pieces: list[bytes] = []
    result = await runtime.run(dataclasses.replace(job, on_output=pieces.append))
    assert result.outcome is RunOutcome.OK, result
    # The hook sees all output (the tail keeps only 64 bytes), in pieces as it is printed.
    expected = b"".join(b"line %d %s\n" % (i, b"x" * 40) for i in range(4))
    assert b"".join(pieces) == expected
    assert len(pieces) > 1
    assert len(result.log_tail) <= 64


async def test_failing_output_hook_does_not_stop_the_job(
    runtime: Runtime, make_job: MakeJob
) -> None:
    def broken(data: bytes) -> None:
        raise RuntimeError("observer broke")

    job = make_job("print('still here')")
    result = await runtime.run(dataclasses.replace(job, on_output=broken))
    assert result.outcome is RunOutcome.OK and "still here" in result.log_tail


async def test_wall_time_stops_job(runtime: Runtime, make_job: MakeJob) -> None:
    limits = RunLimits(wall_time_s=2, memory_bytes=256 << 20, max_pids=64, max_output_bytes=1024)
    job = make_job("import time\nprint('sleeping', flush=True)\ntime.sleep(60)", limits=limits)
    result = await runtime.run(job)
    assert result.outcome is RunOutcome.TIMEOUT
    assert 2 <= result.duration_s < 10
    assert "sleeping" in result.log_tail


async def test_memory_limit_is_oom(runtime: Runtime, make_job: MakeJob) -> None:
    limits = RunLimits(wall_time_s=60, memory_bytes=256 << 20, max_pids=64, max_output_bytes=1024)
    job = make_job("block = b'\\x01' * (1 << 30)\nprint(len(block))", limits=limits)
    result = await runtime.run(job)
    assert result.outcome is RunOutcome.OOM, result
    assert str(1 << 30) not in result.log_tail


async def test_one_big_file_is_output_too_large(runtime: Runtime, make_job: MakeJob) -> None:
    limits = RunLimits(
        wall_time_s=30, memory_bytes=256 << 20, max_pids=64, max_output_bytes=1 << 20
    )
    job = make_job("open('outputs/big.bin', 'wb').write(b'\\0' * (3 << 20))", limits=limits)
    result = await runtime.run(job)
    assert result.outcome is RunOutcome.OUTPUT_TOO_LARGE, result
    # The file-size bound stops the write one byte past the limit, never at 3 MiB.
    assert (job.outputs_dir / "big.bin").stat().st_size <= (1 << 20) + 1


async def test_many_files_are_output_too_large(runtime: Runtime, make_job: MakeJob) -> None:
    limits = RunLimits(
        wall_time_s=30, memory_bytes=256 << 20, max_pids=64, max_output_bytes=1 << 20
    )
    job = make_job(
        "for i in range(8):\n    open(f'outputs/part{i}.bin', 'wb').write(b'\\0' * (300 << 10))",
        limits=limits,
    )
    result = await runtime.run(job)
    assert result.outcome is RunOutcome.OUTPUT_TOO_LARGE
    assert result.output_bytes > 1 << 20


async def test_escaping_symlink_is_refused(runtime: Runtime, make_job: MakeJob) -> None:
    job = make_job("import os\nos.symlink('../inputs/code/main.py', 'outputs/link')")
    result = await runtime.run(job)
    assert result.outcome is RunOutcome.OUTPUT_REFUSED
    assert "link" in result.detail


async def test_special_file_is_refused(runtime: Runtime, make_job: MakeJob) -> None:
    job = make_job("import os\nos.mkdir('outputs/d')\nos.mkfifo('outputs/d/pipe')")
    result = await runtime.run(job)
    assert result.outcome is RunOutcome.OUTPUT_REFUSED
    assert "special file" in result.detail


async def test_inner_symlink_is_accepted(runtime: Runtime, make_job: MakeJob) -> None:
    job = make_job(
        "import os\nopen('outputs/a.txt', 'w').write('a')\nos.symlink('a.txt', 'outputs/b')"
    )
    result = await runtime.run(job)
    assert result.outcome is RunOutcome.OK, result


async def test_cgroups_are_removed_after_runs(runtime: Runtime, make_job: MakeJob) -> None:
    job = make_job("import os\nprint(open('/proc/self/cgroup').read())")
    result = await runtime.run(job)
    assert result.outcome is RunOutcome.OK
    prefix = cgroup_name(job.job_id).rsplit("-", 1)[0]
    if isinstance(runtime, ProcessRuntime):  # bwrap's cgroup namespace hides the path
        assert f"/gpumarket/{prefix}-" in result.log_tail
    # Other runs may be in flight on this host; only this job's groups must be gone.
    leftovers = [
        child.name
        for parent in Path("/sys/fs/cgroup").glob("**/gpumarket")
        for child in parent.iterdir()
        if child.is_dir() and child.name.startswith(prefix)
    ]
    assert leftovers == []


async def test_cancelled_run_leaves_nothing_behind(runtime: Runtime, make_job: MakeJob) -> None:
    job = make_job(
        """
        import os, time
        open("outputs/pid", "w").write(str(os.getpid()))
        time.sleep(60)
        """
    )
    with trio.move_on_after(1.5) as scope:
        await runtime.run(job)
    assert scope.cancelled_caught
    prefix = cgroup_name(job.job_id).rsplit("-", 1)[0]
    assert not [
        child
        for parent in Path("/sys/fs/cgroup").glob("**/gpumarket")
        for child in parent.iterdir()
        if child.name.startswith(prefix)
    ]
    if isinstance(runtime, ProcessRuntime):  # under bwrap the pid is the namespace's own
        pid = int((job.outputs_dir / "pid").read_text())
        assert not Path(f"/proc/{pid}").exists()
