"""A job sees only its own GPUs' device nodes, and its cgroup holds it to its CPU quota.

Real bubblewrap over stand-in device nodes (this machine has no GPU): a temporary ``/dev``
of character devices named like the NVIDIA driver's (each really the null device, so
opening one is harmless) and a driver listing that numbers them out of order, as a real
host may. Two jobs run at once on different GPUs and each tries every node.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest
import trio

from protocol.errors import SandboxError
from provider_node.runtimes import BwrapRuntime, PreparedJob, RunLimits, RunOutcome
from provider_node.runtimes.cgroups import create_job_cgroup
from provider_node.runtimes.gpudevices import CONTROL_NODES, GpuDevices
from tests.provider_node.conftest import DEFAULT_LIMITS, MakeJob

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# PCI bus order (= GPU index) -> the driver's device minor, deliberately not the identity.
MINORS = [2, 0, 3, 1]
UUIDS = [f"GPU-{i:08x}-0000-4000-8000-{i:012x}" for i in range(len(MINORS))]

PROBE = """
import json, os
seen = {"visible_at_start": __VISIBLE__}
os.environ["CUDA_VISIBLE_DEVICES"] = "0,1,2,3"  # whatever the job says, nodes decide
for name in [f"nvidia{n}" for n in range(4)] + __CONTROL__:
    try:
        os.close(os.open("/dev/" + name, os.O_RDWR))
        seen[name] = "opened"
    except OSError as exc:
        seen[name] = type(exc).__name__
for target in ("/dev/nvidia0", "/tmp/nvidia0"):
    try:
        os.mknod(target, 0o666 | 0o020000, os.makedev(195, 0))
        seen["mknod " + target] = "made"
    except OSError as exc:
        seen["mknod " + target] = type(exc).__name__
print(json.dumps(seen))
"""


@pytest.fixture
def devices(tmp_path: Path) -> GpuDevices:
    dev, driver = tmp_path / "dev", tmp_path / "driver"
    dev.mkdir()
    for name in [f"nvidia{m}" for m in MINORS] + list(CONTROL_NODES):
        node = dev / name
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # the null device
        node.chmod(0o666)
    for index, (minor, uuid) in enumerate(zip(MINORS, UUIDS, strict=True)):
        entry = driver / f"0000:{0x17 + 0x13 * index:02x}:00.0"
        entry.mkdir(parents=True)
        (entry / "information").write_text(
            f"Model: \t\t NVIDIA H200\nIRQ:   \t\t 42\nGPU UUID: \t {uuid}\n"
            f"Device Minor: \t {minor}\nBus Location: \t {entry.name}\n"
        )
    return GpuDevices(dev_dir=dev, driver_dir=driver)


def probe(make_job: MakeJob, gpus: tuple[int, ...]) -> PreparedJob:
    code = PROBE.replace("__CONTROL__", repr(list(CONTROL_NODES)))
    code = code.replace("__VISIBLE__", 'os.environ.get("CUDA_VISIBLE_DEVICES")')
    return dataclasses.replace(make_job(code), gpus=gpus)


async def test_two_jobs_at_once_each_open_only_their_own_gpus(
    make_job: MakeJob, devices: GpuDevices
) -> None:
    runtime = BwrapRuntime(term_grace_s=0.5, devices=devices)
    first, second = probe(make_job, (0,)), probe(make_job, (1, 2))
    results = {}

    async def run(name: str, job: PreparedJob) -> None:
        results[name] = await runtime.run(job)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "first", first)
        nursery.start_soon(run, "second", second)
    seen = {}
    for name, result in results.items():
        assert result.outcome is RunOutcome.OK, result
        seen[name] = json.loads(result.log_tail.strip().splitlines()[-1])
    # GPU 0 is the driver's minor 2; GPUs 1 and 2 are minors 0 and 3.
    assert {
        n: v for n, v in seen["first"].items() if n.startswith("nvidia") and n[6:].isdigit()
    } == {
        "nvidia0": "FileNotFoundError",
        "nvidia1": "FileNotFoundError",
        "nvidia2": "opened",
        "nvidia3": "FileNotFoundError",
    }
    assert {
        n: v for n, v in seen["second"].items() if n.startswith("nvidia") and n[6:].isdigit()
    } == {
        "nvidia0": "opened",
        "nvidia1": "FileNotFoundError",
        "nvidia2": "FileNotFoundError",
        "nvidia3": "opened",
    }
    for job in seen.values():
        assert all(job[name] == "opened" for name in CONTROL_NODES)
        # It cannot make the node it was not given, in /dev or anywhere else.
        assert job["mknod /dev/nvidia0"] != "made" and job["mknod /tmp/nvidia0"] != "made"
    # CUDA is told its GPUs by UUID: right however CUDA numbers the nodes it can open.
    assert seen["first"]["visible_at_start"] == UUIDS[0]
    assert seen["second"]["visible_at_start"] == f"{UUIDS[1]},{UUIDS[2]}"


async def test_a_job_without_gpus_gets_no_gpu_node(make_job: MakeJob, devices: GpuDevices) -> None:
    result = await BwrapRuntime(term_grace_s=0.5, devices=devices).run(probe(make_job, ()))
    assert result.outcome is RunOutcome.OK, result
    seen = json.loads(result.log_tail.strip().splitlines()[-1])
    assert {v for n, v in seen.items() if not n.startswith(("mknod", "visible"))} == {
        "FileNotFoundError"
    }


def test_without_the_driver_listing_gpus_keep_their_index_as_minor(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl", "kfd"):
        (dev / name).write_bytes(b"")
    plain = GpuDevices(dev_dir=dev, driver_dir=tmp_path / "absent")
    assert plain.binds((2,)) == [
        (str(dev / "nvidia2"), "/dev/nvidia2"),
        (str(dev / "nvidiactl"), "/dev/nvidiactl"),
        (str(dev / "kfd"), "/dev/kfd"),
    ]
    assert plain.binds(()) == []
    assert plain.visible((2, 1)) == "0,1"  # positions among the nodes the sandbox holds


SPIN = """
import multiprocessing, time

def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

workers = [multiprocessing.Process(target=spin, args=(1.5,)) for _ in range(2)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print("spun")
"""


def _cpu_controller() -> str | None:
    group = create_job_cgroup(f"probe-cpu-{os.getpid()}")
    try:
        return group.no_cpu
    finally:
        group.close()


async def test_the_cpu_quota_holds_the_job_back(make_job: MakeJob) -> None:
    """Two processes spinning for 1.5 s against a quota of a fifth of one CPU: the kernel
    throttles the job's cgroup (its own counter says so); under a quota of 8 CPUs it never
    does. Where the host has no cpu controller the run says no quota held (None)."""
    runtime = BwrapRuntime(term_grace_s=0.5)
    limited = make_job(SPIN, limits=dataclasses.replace(DEFAULT_LIMITS, cpus=0.2))
    result = await runtime.run(limited)
    assert result.outcome is RunOutcome.OK and "spun" in result.log_tail, result
    if _cpu_controller() is not None:
        assert result.cpu_throttled is None
        return
    assert result.cpu_throttled is not None and result.cpu_throttled > 0
    roomy = make_job(SPIN, limits=dataclasses.replace(DEFAULT_LIMITS, cpus=8.0))
    free = await runtime.run(roomy)
    assert free.outcome is RunOutcome.OK and free.cpu_throttled == 0


def test_limits_refuse_a_nonsense_quota() -> None:
    with pytest.raises(SandboxError, match="cpus must lie"):
        RunLimits(wall_time_s=1, memory_bytes=1 << 30, max_pids=8, max_output_bytes=0, cpus=0)


def test_a_listing_that_cannot_place_a_gpu_fails_the_run_rather_than_guess(
    tmp_path: Path, devices: GpuDevices
) -> None:
    with pytest.raises(SandboxError, match="GPU 4 is not among the driver's 4 GPUs"):
        devices.binds((4,))
    broken = next(devices.driver_dir.iterdir()) / "information"
    broken.write_text("Model: NVIDIA H200\n")  # no Device Minor
    fresh = GpuDevices(dev_dir=devices.dev_dir, driver_dir=devices.driver_dir)
    with pytest.raises(SandboxError, match="names no Device Minor"):
        fresh.binds((1,))
    assert fresh.binds(()) == []  # a job without GPUs is not concerned
