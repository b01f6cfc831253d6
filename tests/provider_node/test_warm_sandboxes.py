"""Warm sandboxes with real bubblewrap: same results as a cold start, one job per sandbox,
nothing of a job inside before its hand-off, limits from the hand-off on, a bounded pool
that refills, and a cold start whenever a warm one is not there or not usable."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from provider_node.runtimes import BwrapRuntime, PreparedJob, RunLimits, RunOutcome, RunResult
from provider_node.runtimes.warm import SlotHold, WarmSlot
from provider_node.runtimes.warmpool import PoolConfig, WarmPool
from tests.provider_node.conftest import MakeJob

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

LIMITS = RunLimits(wall_time_s=120, memory_bytes=2 << 30, max_pids=256, max_output_bytes=1 << 20)

# Everything a job could tell apart between a warm and a cold start, written to its outputs.
PROBE_JOB = """
import gc, hashlib, json, os, pathlib, random, sys
import numpy as np
import torch

frozen = gc.get_freeze_count()
inductor_at_start = "torch._inductor.config" in sys.modules
import torch._inductor.config as inductor_config
finalized = []
class Node:
    def __del__(self):
        finalized.append(True)
node = Node()
node.cycle = [node]  # the job's own cyclic garbage: still collected and finalized
del node
gc.collect()
out = pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"])
a = torch.randn(128, 96)
b = torch.randn(96, 64)
np.save(out / "product.npy", (a @ b).tanh().numpy())
facts = {
    "deterministic": torch.are_deterministic_algorithms_enabled(),
    "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
    "inductor": [inductor_at_start, inductor_config.deterministic],
    "cudnn": [torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic],
    "random": random.random(),
    "numpy": float(np.random.rand()),
    "hash_order": sorted({"alpha", "beta", "gamma", "delta"}, key=hash),
    "hash": hash("gpumarket"),
    "argv": sys.argv,
    "orig_argv": sys.orig_argv,
    "path0": sys.path[0],
    "environ": dict(os.environ),
    "cwd": os.getcwd(),
    "stdin": sys.stdin.read(),
    "modules": sorted(m for m in sys.modules if not m.startswith("__")),
    "uid": os.getuid(),
    "pid": os.getpid(),
    "threads": torch.get_num_threads(),
    "imports_frozen": frozen > 0,
    "own_cycle_finalized": finalized == [True],
}
(out / "facts.json").write_text(json.dumps(facts, sort_keys=True, indent=1))
print("sum", float((a @ b).sum()), "args", sys.argv[1:])
"""

ONCE_JOB = """
import json, os, pathlib
out = pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"])
found = {p: os.path.exists(p) for p in ("/tmp/left-by-job-1", "/home/job/left-by-job-1")}
pathlib.Path("/tmp/left-by-job-1").write_text("x")
pathlib.Path("/home/job/left-by-job-1").write_text("x")
ns = {n: os.readlink(f"/proc/self/ns/{n}") for n in ("pid", "mnt", "user", "net", "ipc")}
(out / "seen.json").write_text(json.dumps({"found": found, "ns": ns}))
"""


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[WarmPool]:
    """A pool of one warm sandbox over real bubblewrap (CPU only); it holds less memory
    than most jobs here get, so the hand-off raises the cgroup's limits."""
    config = PoolConfig(size=1, hold=SlotHold(memory_bytes=1 << 30))
    async with WarmPool(BwrapRuntime(term_grace_s=0.5), tmp_path / "warm", config) as warm:
        yield warm


def _digest(job: PreparedJob) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(job.outputs_dir.iterdir())
    }


def _facts(job: PreparedJob) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((job.outputs_dir / "facts.json").read_text())
    return loaded


async def _warm_run(pool: WarmPool, job: PreparedJob) -> RunResult:
    """Run ``job`` once a slot is ready, and check that it really started warm."""
    await pool.wait_ready(job.gpus)
    before = pool.figures.warm_starts
    result = await pool.run(job)
    assert pool.figures.warm_starts == before + 1, pool.figures
    return result


async def test_warm_start_gives_the_cold_result(pool: WarmPool, make_job: MakeJob) -> None:
    cold_job, warm_job = (
        make_job(PROBE_JOB, torch=True, limits=LIMITS, seed=2**40 + 11, args=("a", "b c"))
        for _ in range(2)
    )
    cold = await pool.runtime.run(cold_job)
    warm = await _warm_run(pool, warm_job)
    assert cold.outcome is RunOutcome.OK and warm.outcome is RunOutcome.OK, (cold, warm)
    assert warm.log_tail == cold.log_tail
    assert _facts(warm_job) == _facts(cold_job)
    assert _digest(warm_job) == _digest(cold_job)
    facts = _facts(warm_job)
    # Deterministic algorithms on, as torch.use_deterministic_algorithms(True) sets them;
    # the inductor's config (a second of imports) only once the job imports it, and then
    # deterministic too.
    assert facts["deterministic"] is True and facts["warn_only"] is False
    assert facts["inductor"] == [False, True]
    assert facts["argv"] == ["/job/inputs/code/main.py", "a", "b c"]
    # The imports are out of the collector's way (a fast exit); the job's objects are not.
    assert facts["imports_frozen"] is True and facts["own_cycle_finalized"] is True
    assert facts["stdin"] == ""
    environ = facts["environ"]
    assert isinstance(environ, dict) and environ["GPUMARKET_SEED"] == str(2**40 + 11)
    # The inputs are back where the worker put them; the outputs are the job's.
    assert (warm_job.inputs_dir / "code" / "main.py").is_file()
    assert not list(pool.directory.glob("slot-0/*"))


async def test_a_sandbox_serves_one_job(pool: WarmPool, make_job: MakeJob) -> None:
    first, second = (make_job(ONCE_JOB, torch=True, limits=LIMITS) for _ in range(2))
    await pool.wait_ready()
    first_slot = pool.slots[0]
    first_pids = first_slot.pids()
    assert (await _warm_run(pool, first)).ok
    assert not first_slot.pids() and not first_slot.directory.exists()
    assert first_slot not in pool.slots
    second_slot = await pool.wait_ready()
    assert second_slot is not first_slot and not second_slot.pids() & first_pids
    assert (await _warm_run(pool, second)).ok
    seen = [json.loads((j.outputs_dir / "seen.json").read_text()) for j in (first, second)]
    assert seen[1]["found"] == {"/tmp/left-by-job-1": False, "/home/job/left-by-job-1": False}
    for name, value in seen[0]["ns"].items():
        assert seen[1]["ns"][name] != value, name


async def test_inputs_are_read_only_inside(pool: WarmPool, make_job: MakeJob) -> None:
    job = make_job(
        """
        import os, pathlib
        attempts = {
            "overwrite": lambda: open("/job/inputs/code/main.py", "w").write("x"),
            "create": lambda: open("/job/inputs/code/new.py", "w").write("x"),
            "mkdir": lambda: os.mkdir("/job/inputs/extra"),
            "chmod": lambda: os.chmod("/job/inputs/code/main.py", 0o777),
            "rename": lambda: os.rename("/job/inputs/code", "/job/inputs/moved"),
        }
        for name, attempt in attempts.items():
            try:
                attempt()
            except OSError as exc:
                print(name, "refused", exc.errno)
            else:
                print(name, "ALLOWED")
        pathlib.Path("/job/outputs/ok").write_text("written")
        """,
        torch=True,
        limits=LIMITS,
        extra_inputs={"data.bin": b"\x00\x01" * 100},
    )
    original = (job.inputs_dir / "code" / "main.py").read_bytes()
    result = await _warm_run(pool, job)
    assert result.ok, result
    assert "ALLOWED" not in result.log_tail
    assert result.log_tail.count("refused") == 5
    assert sorted(p.name for p in (job.inputs_dir / "code").iterdir()) == ["data.bin", "main.py"]
    assert (job.inputs_dir / "code" / "main.py").read_bytes() == original
    assert (job.outputs_dir / "ok").read_text() == "written"


async def test_nothing_of_the_job_is_inside_before_hand_off(
    pool: WarmPool, make_job: MakeJob
) -> None:
    slot = await pool.wait_ready()
    expected_env = pool.runtime.warm_env(())
    pids = slot.pids()
    assert pids
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0].decode() for e in environ if e}
        assert "GPUMARKET_SEED" not in names and "JOB_TOKEN" not in names
        assert names <= set(expected_env) | {"PWD", "SHLVL", "_"}, pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"secret-arg" not in cmdline and b"/job/inputs/code/main.py" not in cmdline
    assert not list(slot.inputs.iterdir()) and not list(slot.outputs.iterdir())
    job = make_job(
        """
        import json, os, pathlib, sys
        start = pathlib.Path("/proc/self/environ").read_bytes().decode()
        json.dump(
            {"argv": sys.argv[1:], "seed": os.environ["GPUMARKET_SEED"],
             "token": os.environ["JOB_TOKEN"], "seed_at_exec": "GPUMARKET_SEED" in start},
            open("/job/outputs/seen.json", "w"),
        )
        """,
        torch=True,
        limits=LIMITS,
        seed=987654321,
        args=("secret-arg",),
        env={"JOB_TOKEN": "tok-xyz"},
    )
    assert (await _warm_run(pool, job)).ok
    seen = json.loads((job.outputs_dir / "seen.json").read_text())
    # The process was started before its job existed: the job came through the pipe only.
    assert seen == {
        "argv": ["secret-arg"],
        "seed": "987654321",
        "token": "tok-xyz",
        "seed_at_exec": False,
    }


async def test_limits_and_wall_clock_apply_from_hand_off(pool: WarmPool, make_job: MakeJob) -> None:
    # The slot waits under 1 GiB; this job may use 2 GiB from its hand-off on.
    roomy = await _warm_run(
        pool, make_job("block = b'\\x01' * (1 << 30)\nprint(len(block))", torch=True, limits=LIMITS)
    )
    assert roomy.outcome is RunOutcome.OK, roomy
    small = RunLimits(wall_time_s=60, memory_bytes=768 << 20, max_pids=64, max_output_bytes=1000)
    oom = await _warm_run(pool, make_job("block = b'\\x01' * (2 << 30)", torch=True, limits=small))
    assert oom.outcome is RunOutcome.OOM, oom
    big = await _warm_run(
        pool,
        make_job("open('/job/outputs/big', 'wb').write(b'x' * 5000)", torch=True, limits=small),
    )
    assert big.outcome is RunOutcome.OUTPUT_TOO_LARGE, big
    assert big.output_bytes == 1001  # cut by the file size bound the hand-off set
    quick = RunLimits(wall_time_s=3, memory_bytes=768 << 20, max_pids=64, max_output_bytes=1000)
    slow = await _warm_run(pool, make_job("import time\ntime.sleep(30)", torch=True, limits=quick))
    assert slow.outcome is RunOutcome.TIMEOUT, slow


async def _until_ready(pool: WarmPool, count: int) -> tuple[int, int]:
    """Wait until ``count`` slots are ready; returns the most slots, and the most slots
    still warming, seen meanwhile."""
    most = warming = 0
    with trio.fail_after(240):
        while len(pool.ready_gpu_sets()) < count:
            most = max(most, len(pool.slots))
            warming = max(warming, len([s for s in pool.slots if not s.ready]))
            await trio.sleep(0.05)
    return most, warming


async def test_pool_is_bounded_and_refills(tmp_path: Path, make_job: MakeJob) -> None:
    async with WarmPool(BwrapRuntime(), tmp_path / "warm", PoolConfig(size=2)) as pool:
        # One warms at a time, and never more than two exist.
        assert await _until_ready(pool, 2) == (2, 1)
        assert len(pool.slots) == 2 and pool.figures.slots_started == 2
        assert len(list(pool.directory.iterdir())) == 2
        groups = [f.parent for s in pool.slots if s.cgroup for f in s.cgroup.procs_files]
        assert groups and all(g.is_dir() for g in groups)
        before = set(pool.slots)
        assert (await _warm_run(pool, make_job("print(1)", torch=True, limits=LIMITS))).ok
        assert len(pool.slots) <= 2
        assert await _until_ready(pool, 2) == (2, 1)
        assert len(before & set(pool.slots)) == 1
        assert pool.figures.slots_started == 3
    assert not (tmp_path / "warm").exists()
    assert not any(g.exists() for g in groups)


async def test_a_slot_outlives_the_thread_that_started_it(
    pool: WarmPool, make_job: MakeJob
) -> None:
    # Worker threads end after 10 idle seconds; a sandbox dies with whatever forked it.
    slot = await pool.wait_ready()
    await trio.sleep(12)
    assert slot.alive() and pool.figures.slots_died == 0
    assert (await _warm_run(pool, make_job("print('still warm')", torch=True))).ok


async def test_a_slot_that_died_idle_is_replaced(pool: WarmPool, make_job: MakeJob) -> None:
    slot = await pool.wait_ready()
    for pid in slot.pids():
        os.kill(pid, signal.SIGKILL)
    with trio.fail_after(60):
        while slot in pool.slots:
            await trio.sleep(0.05)
    assert pool.figures.slots_died == 1 and not slot.directory.exists()
    replacement = await pool.wait_ready()
    assert replacement is not slot
    assert (await _warm_run(pool, make_job("print('on the new one')", torch=True))).ok


async def test_a_dead_slot_at_hand_off_means_a_cold_start(
    tmp_path: Path, make_job: MakeJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = BwrapRuntime(term_grace_s=0.5)
    slot = WarmSlot(runtime, tmp_path / "slot", ())
    await slot.start(SlotHold())
    assert slot.alive()
    for pid in slot.pids():
        os.kill(pid, signal.SIGKILL)
    with trio.fail_after(30):
        while slot.pids():
            await trio.sleep(0.05)
    job = make_job("print('ran')", torch=True, limits=LIMITS)
    # As if it died between the pool's check and the hand-off: the write finds no reader.
    monkeypatch.setattr(slot, "alive", lambda: True)
    assert await slot.run(job) is None  # not handed: the caller starts it cold
    assert (job.inputs_dir / "code" / "main.py").is_file()
    assert not list(job.outputs_dir.iterdir())
    assert not slot.directory.exists()
    # The pool does exactly that: a slot that cannot take the job means a cold start.
    async with WarmPool(runtime, tmp_path / "warm", PoolConfig(size=1)) as pool:
        ready = await pool.wait_ready()
        assert ready.proc is not None
        ready.proc.kill()  # the launcher's parent: its sandbox goes with it
        with trio.fail_after(30):
            while ready.pids():
                await trio.sleep(0.01)
        result = await pool.run(make_job("print('cold')", torch=True, limits=LIMITS))
        assert result.ok and "cold" in result.log_tail
        assert pool.figures.cold_starts == 1 and pool.figures.warm_starts == 0


async def test_gpu_slot_that_cannot_initialise_is_dropped_and_jobs_start_cold(
    tmp_path: Path, make_job: MakeJob
) -> None:
    # No GPU here: CUDA initialisation fails in the slot, so the job must start cold.
    config = PoolConfig(size=1, gpus_per_slot=1)
    async with WarmPool(
        BwrapRuntime(), tmp_path / "warm", config, devices=(0,), free_gpus=lambda: (0,)
    ) as pool:
        with trio.fail_after(120):
            while pool.figures.slots_failed == 0:
                await trio.sleep(0.1)
        assert not pool.ready_gpu_sets()
        base = make_job("print('no warm start')", torch=True, limits=LIMITS)
        job = PreparedJob(base.job_id, base.work_dir, base.entrypoint, base.limits, gpus=(0,))
        result = await pool.run(job)
        assert result.ok, result
        assert pool.figures.cold_starts == 1


class _NoCuda(BwrapRuntime):
    """Slots that claim a GPU set without initialising CUDA: the GPU bookkeeping of the
    pool with real sandboxes on a host that has no GPU."""

    def __init__(self) -> None:
        super().__init__(term_grace_s=0.5)
        self.alive_at_cold_start: list[bool] = []
        self.watched: list[WarmSlot] = []

    def warm_env(self, gpus: tuple[int, ...]) -> dict[str, str]:
        return super().warm_env(())

    async def run(self, job: PreparedJob) -> RunResult:
        self.alive_at_cold_start = [bool(s.pids()) for s in self.watched]
        return await super().run(job)


async def test_gpu_slots_are_killed_before_their_gpu_goes_elsewhere(
    tmp_path: Path, make_job: MakeJob
) -> None:
    runtime = _NoCuda()
    free = [0, 1]
    config = PoolConfig(size=2, gpus_per_slot=1, hold=SlotHold(ready_timeout_s=120))
    async with WarmPool(
        runtime, tmp_path / "warm", config, devices=(0, 1), free_gpus=lambda: tuple(free)
    ) as pool:
        await pool.wait_ready((0,))
        await pool.wait_ready((1,))
        assert sorted(pool.ready_gpu_sets()) == [(0,), (1,)]
        runtime.watched = pool.slots
        base = make_job("print('on both')", torch=True, limits=LIMITS)
        both = PreparedJob(base.job_id, base.work_dir, base.entrypoint, base.limits, gpus=(0, 1))
        free.clear()  # the worker holds both GPUs now
        result = await pool.run(both)
        assert result.ok, result
        # Neither slot fit a two-GPU job; both were gone before it started.
        assert runtime.alive_at_cold_start == [False, False]
        assert pool.figures.slots_killed == 2 and pool.figures.cold_starts == 1
        free.extend([0, 1])
        slot = await pool.wait_ready((0,))
        # A benchmark challenge on GPU 0 gets it alone: that slot goes, no warming meanwhile.
        async with pool.paused((0,)):
            assert not slot.pids() and slot not in pool.slots
            assert all(s.gpus != (0,) for s in pool.slots)
            started = pool.figures.slots_started
            await trio.sleep(1.5)
            assert pool.figures.slots_started == started
        await pool.wait_ready((0,))


async def test_a_job_waits_for_the_slot_warming_on_its_gpu_set(
    pool: WarmPool, make_job: MakeJob
) -> None:
    # Jobs one after another: the second arrives while the first one's replacement is
    # still warming. Starting it cold would cost a whole warm-up and share the CPU with
    # the one under way; it waits for that slot instead.
    first = await _warm_run(pool, make_job("print('first')", torch=True, limits=LIMITS))
    assert first.ok
    assert [s.ready for s in pool.slots] == [False]  # the replacement, warming
    second = await pool.run(make_job("print('second')", torch=True, limits=LIMITS))
    assert second.ok and "second" in second.log_tail
    assert pool.figures.warm_starts == 2 and pool.figures.cold_starts == 0
    assert pool.figures.warming_waits == 1


async def test_a_job_waits_for_a_warming_slot_only_so_long(
    pool: WarmPool, make_job: MakeJob
) -> None:
    await _warm_run(pool, make_job("print('first')", torch=True, limits=LIMITS))
    (warming,) = pool.slots
    assert not warming.ready
    # As if warm-ups had taken 50 ms: this one is slower than twice that, and a cold start
    # goes ahead; the slot warms on for the next job.
    pool._last_warm_up_s = 0.05
    result = await pool.run(make_job("print('cold')", torch=True, limits=LIMITS))
    assert result.ok and pool.figures.cold_starts == 1 and pool.figures.warming_waits == 0
    assert warming in pool.slots


async def test_a_slot_that_fails_while_a_job_waits_means_a_cold_start(
    pool: WarmPool, make_job: MakeJob
) -> None:
    await _warm_run(pool, make_job("print('first')", torch=True, limits=LIMITS))
    (warming,) = pool.slots
    pool._last_warm_up_s = 600.0  # the job would wait that slot out for 20 minutes
    job = make_job("print('cold after all')", torch=True, limits=LIMITS)
    results: list[RunResult] = []

    async def run() -> None:
        results.append(await pool.run(job))

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            while not warming.pids():
                await trio.sleep(0.01)
            await trio.sleep(0.2)
            assert not results and not warming.ready  # the job is waiting for it
            for pid in warming.pids():
                os.kill(pid, signal.SIGKILL)
    (result,) = results
    assert result.ok and "cold after all" in result.log_tail
    assert pool.figures.cold_starts == 1 and pool.figures.warming_waits == 0


class _SeesWarming(BwrapRuntime):
    """Notes, at each cold start, which of the ``watched`` slots were ready."""

    def __init__(self) -> None:
        super().__init__(term_grace_s=0.5)
        self.watched: list[WarmSlot] = []
        self.ready_at_cold_start: list[list[bool]] = []

    async def run(self, job: PreparedJob) -> RunResult:
        self.ready_at_cold_start.append([s.ready for s in self.watched])
        return await super().run(job)


async def test_one_job_waits_for_a_warming_slot_and_the_next_starts_cold(
    tmp_path: Path, make_job: MakeJob
) -> None:
    runtime = _SeesWarming()
    config = PoolConfig(size=1, hold=SlotHold(memory_bytes=1 << 30))
    async with WarmPool(runtime, tmp_path / "warm", config) as pool:
        await _warm_run(pool, make_job("print('first')", torch=True, limits=LIMITS))
        runtime.watched = pool.slots  # the replacement, warming
        results: list[RunResult] = []

        async def run(text: str) -> None:
            results.append(await pool.run(make_job(f"print({text!r})", torch=True, limits=LIMITS)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "waits")
            await trio.sleep(0)
            nursery.start_soon(run, "cold")
        assert all(r.ok for r in results), results
        # The second did not queue behind the first for the same slot: it started cold
        # while that slot was still warming.
        assert runtime.ready_at_cold_start == [[False]]
        assert pool.figures.warming_waits == 1 and pool.figures.cold_starts == 1


async def test_a_gpu_job_waits_for_the_slot_warming_on_the_gpus_it_holds(
    tmp_path: Path, make_job: MakeJob
) -> None:
    # The worker holds a job's GPUs before the pool sees the job: a slot warming on them
    # is the one that job waits for, not a slot whose GPU "went to a job some other way".
    runtime = _NoCuda()
    free = [0]
    config = PoolConfig(size=1, gpus_per_slot=1, hold=SlotHold(ready_timeout_s=120))
    async with WarmPool(
        runtime, tmp_path / "warm", config, devices=(0,), free_gpus=lambda: tuple(free)
    ) as pool:

        def on_gpu0(text: str) -> PreparedJob:
            base = make_job(f"print({text!r})", torch=True, limits=LIMITS)
            return PreparedJob(base.job_id, base.work_dir, base.entrypoint, base.limits, gpus=(0,))

        await pool.wait_ready((0,))
        free.clear()
        assert (await pool.run(on_gpu0("first"))).ok
        free.append(0)  # given back; the replacement starts warming on it
        with trio.fail_after(30):
            while not pool.slots:
                await trio.sleep(0.01)
        assert not pool.slots[0].ready
        free.clear()  # the next job holds GPU 0
        second = await pool.run(on_gpu0("second"))
        assert second.ok and "second" in second.log_tail
        assert pool.figures.warm_starts == 2 and pool.figures.cold_starts == 0
        assert pool.figures.warming_waits == 1 and pool.figures.slots_killed == 0
