"""The podman runtime starting real containers from an image built for the session.

Each test runs a container through :class:`EngineRuntime` as the worker does and checks
what the job could and could not do from inside it: write only its outputs, reach no
network, see the granted ``/dev/shm``, be stopped at its limits; and that images are refused
before anything runs when they are not pinned by digest or need a newer CUDA than the host's
driver runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from protocol.messages import Commitment, HandBack
from provider_node.jobstore import LocalPhase
from provider_node.runtimes import (
    CommandEntrypoint,
    PreparedJob,
    RunLimits,
    RunOutcome,
    TorchEntrypoint,
)
from provider_node.runtimes.container import shm_bytes
from provider_node.runtimes.images import ImageRefused
from tests.provider_node.conftest import ContainerImages
from tests.provider_node.jobharness import Harness, ask, wait_for
from tests.provider_node.test_bwrap_torch import LIMITS as TORCH_LIMITS
from tests.provider_node.test_bwrap_torch import MATMUL_JOB

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LIMITS = RunLimits(wall_time_s=60, memory_bytes=256 << 20, max_pids=64, max_output_bytes=1 << 20)

PROBE_JOB = """
import json, os, socket
def attempt(action):
    try:
        action()
    except OSError as exc:
        return type(exc).__name__ + ": " + (exc.strerror or str(exc))
    return "allowed"
def write(path):
    return lambda: open(path, "w").write("x")
def connect():
    with socket.create_connection(("10.0.0.1", 80), timeout=2):
        pass
shm = os.statvfs("/dev/shm")
report = {
    "uid": os.getuid(),
    "cwd": os.getcwd(),
    "root": attempt(write("/etc/gpumarket")),
    "inputs": attempt(write("inputs/code/new")),
    "outputs": attempt(write(os.environ["GPUMARKET_OUTPUT_DIR"] + "/written")),
    "network": attempt(connect),
    "interfaces": sorted(name for _, name in socket.if_nameindex()),
    "shm_bytes": shm.f_blocks * shm.f_frsize,
    "seed": os.environ["GPUMARKET_SEED"],
}
with open("outputs/report.json", "w") as out:
    json.dump(report, out)
print("probe done")
"""


def container_job(
    tmp_path: Path,
    code: str,
    image: str,
    *,
    limits: RunLimits = LIMITS,
    gpus: tuple[int, ...] = (),
) -> PreparedJob:
    work = tmp_path / f"work-{uuid.uuid4().hex[:8]}"
    (work / "inputs" / "code").mkdir(parents=True)
    (work / "outputs").mkdir()
    (work / "inputs" / "code" / "main.py").write_text(textwrap.dedent(code))
    return PreparedJob(
        job_id=f"test-{uuid.uuid4().hex[:12]}",
        work_dir=work,
        entrypoint=CommandEntrypoint(("python3", "-s", "inputs/code/main.py")),
        limits=limits,
        seed=11,
        gpus=gpus,
        image=image,
    )


def container_left(images: ContainerImages, job: PreparedJob) -> bool:
    """Whether the engine still holds the job's container (running or stopped)."""
    listed = subprocess.run(
        [images.engine, "ps", "--all", "--format", "{{.Names}}"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.split()  # fmt: skip
    return any(name.startswith(f"gpumarket-job-{job.job_id}-") for name in listed)


def test_probe_runs_a_real_container(container_images: ContainerImages) -> None:
    assert container_images.runtime().unavailable_reason() is None
    broken = container_images.runtime(container_python="/no/such/python")
    reason = broken.unavailable_reason()
    assert reason is not None and "probe container" in reason
    tagged = container_images.runtime(probe_image="localhost/gpumarket-test-python:latest")
    assert "not pinned by digest" in (tagged.unavailable_reason() or "")
    missing = container_images.runtime(
        probe_image="localhost/gpumarket-test-absent@sha256:" + "0" * 64
    )
    assert "probe container" in (missing.unavailable_reason() or "")
    # The engine's default OCI runtime either runs, or its refusal names the fix (crun
    # refuses hosts with cgroup v1 beside a v2 mount that holds controllers).
    default = container_images.runtime(oci_runtime=None).unavailable_reason()
    assert default is None or "PROVIDER_CONTAINER_OCI_RUNTIME=runc" in default


async def test_job_writes_only_its_outputs_and_reaches_no_network(
    container_images: ContainerImages, tmp_path: Path
) -> None:
    job = container_job(tmp_path, PROBE_JOB, container_images.python)
    result = await container_images.runtime().run(job)
    assert result.outcome is RunOutcome.OK, result
    assert "probe done" in result.log_tail
    report = json.loads((job.outputs_dir / "report.json").read_text())
    assert report["uid"] == 65534 and report["cwd"] == "/job" and report["seed"] == "11"
    assert report["outputs"] == "allowed"
    assert (job.outputs_dir / "written").read_text() == "x"
    assert report["root"].startswith("OSError") and "Read-only" in report["root"]
    assert "Read-only" in report["inputs"]
    assert not (job.inputs_dir / "code" / "new").exists()
    assert report["network"] != "allowed" and report["interfaces"] == ["lo"]
    assert report["shm_bytes"] == shm_bytes(LIMITS) == LIMITS.memory_bytes // 2
    assert not container_left(container_images, job)


async def test_memory_limit_stops_the_job(
    container_images: ContainerImages, tmp_path: Path
) -> None:
    code = (
        "print('allocating', flush=True)\nblocks = [bytearray(16 << 20) for _ in range(16)]\n"
        "open('outputs/survived', 'w').write('256 MiB')\n"
    )
    limits = RunLimits(wall_time_s=60, memory_bytes=64 << 20, max_pids=64, max_output_bytes=1 << 20)
    job = container_job(tmp_path, code, container_images.python, limits=limits)
    result = await container_images.runtime().run(job)
    assert "allocating" in result.log_tail
    assert not (job.outputs_dir / "survived").exists()
    # The kernel's OOM killer ends the job. The engine says so (State.OOMKilled) where its
    # monitor sees the memory cgroup's events; podman 4.3 on a host with cgroup v1 beside a
    # v2 mount does not, and the job then ends as killed by SIGKILL.
    assert (result.outcome, result.exit_code) in {(RunOutcome.OOM, 137), (RunOutcome.KILLED, 137)}


async def test_timeout_stops_and_removes_the_container(
    container_images: ContainerImages, tmp_path: Path
) -> None:
    code = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"
    limits = RunLimits(wall_time_s=3, memory_bytes=64 << 20, max_pids=64, max_output_bytes=1 << 20)
    job = container_job(tmp_path, code, container_images.python, limits=limits)
    result = await container_images.runtime(term_grace_s=1.0).run(job)
    assert result.outcome is RunOutcome.TIMEOUT, result
    assert not container_left(container_images, job)


async def test_failing_job_keeps_its_exit_code(
    container_images: ContainerImages, tmp_path: Path
) -> None:
    job = container_job(tmp_path, "import sys\nsys.exit(3)\n", container_images.python)
    result = await container_images.runtime().run(job)
    assert (result.outcome, result.exit_code) == (RunOutcome.NONZERO_EXIT, 3)


async def test_tagged_image_is_refused_before_running(
    container_images: ContainerImages, tmp_path: Path
) -> None:
    marker = "outputs/ran"
    code = f"open({marker!r}, 'w').write('ran')\n"
    job = container_job(tmp_path, code, "localhost/gpumarket-test-python:latest")
    with pytest.raises(ImageRefused, match="not pinned by digest") as refused:
        await container_images.runtime().run(job)
    assert refused.value.job_fault
    assert not (job.work_dir / marker).exists()


async def test_image_needing_newer_cuda_is_refused_before_running(
    container_images: ContainerImages, tmp_path: Path
) -> None:
    code = "open('outputs/ran', 'w').write('ran')\n"
    driver_12_2 = container_images.runtime(driver=lambda: (12, 2))
    job = container_job(tmp_path, code, container_images.cuda, gpus=(0,))
    with pytest.raises(ImageRefused, match=r"CUDA 99\.1 .* CUDA 12\.2") as refused:
        await driver_12_2.run(job)
    assert not refused.value.job_fault
    assert not (job.outputs_dir / "ran").exists()
    no_driver = container_images.runtime(driver=lambda: None)
    with pytest.raises(ImageRefused, match="no NVIDIA driver"):
        await no_driver.run(job)
    # Without GPUs the image's CUDA is never used, so it runs.
    cpu_job = container_job(tmp_path, code, container_images.cuda)
    assert (await driver_12_2.run(cpu_job)).ok
    assert (cpu_job.outputs_dir / "ran").read_text() == "ran"


async def test_an_image_that_cannot_be_had_is_refused(
    container_images: ContainerImages, tmp_path: Path
) -> None:
    absent = "localhost/gpumarket-test-absent@sha256:" + "0" * 64
    job = container_job(tmp_path, "print('x')\n", absent)
    with pytest.raises(ImageRefused, match="not on this host") as refused:
        await container_images.runtime().run(job)
    assert not refused.value.job_fault
    # Pulling is tried first where allowed; with no registry reachable it fails the same way.
    with pytest.raises(ImageRefused, match="could not pull") as refused:
        await container_images.runtime(pull=True).run(job)
    assert not refused.value.job_fault


async def test_worker_hands_back_an_image_the_driver_cannot_run(
    container_images: ContainerImages, tmp_path: Path
) -> None:
    """Through the worker: the GPU job is handed back unrun (not failed: another provider
    with a newer driver can run it), while the same worker runs a CPU container job."""
    harness = Harness.create(tmp_path, "container-worker")
    code = "open('outputs/ran', 'w').write('ran')\n"
    command = "command: [python3, inputs/code/main.py]}"
    needs_cuda = await harness.assignment(
        code, runtime=f"{{kind: container, image: '{container_images.cuda}', {command}", gpus=1
    )
    plain = await harness.assignment(
        code, runtime=f"{{kind: container, image: '{container_images.python}', {command}"
    )
    absent = "localhost/gpumarket-test-absent@sha256:" + "0" * 64
    unreachable = await harness.assignment(
        code, runtime=f"{{kind: container, image: '{absent}', {command}"
    )
    runtime = container_images.runtime(driver=lambda: (12, 2))
    worker = harness.worker(runtime=runtime, gpus=(0,))  # a stand-in GPU: refused before use
    async with harness.server(worker=worker) as server:
        await ask(harness, server, needs_cuda)
        back = await wait_for(harness.reporter, HandBack, needs_cuda.job_id)
        await ask(harness, server, unreachable)
        missing = await wait_for(harness.reporter, HandBack, unreachable.job_id)
        assert isinstance(missing, HandBack) and "not on this host" in missing.reason
        await ask(harness, server, plain)
        await wait_for(harness.reporter, Commitment, plain.job_id)
    assert isinstance(back, HandBack)
    assert "built for CUDA 99.1" in back.reason and "CUDA 12.2 at most" in back.reason
    record = harness.jobs.load(needs_cuda.job_id)
    assert record is not None and record.phase is LocalPhase.HANDED_BACK
    assert worker.gpus.free == 1


async def test_torch_job_runs_through_the_launcher_in_the_torch_image(
    container_images: ContainerImages, tmp_path: Path
) -> None:
    """The torch entrypoint: the launcher mounted in, seeded with the job's seed, and the
    product equal to the host's own torch seeded the same way (so to bwrap's)."""
    job = container_job(tmp_path, MATMUL_JOB, container_images.python, limits=TORCH_LIMITS)
    job = replace(job, entrypoint=TorchEntrypoint("inputs/code/main.py"), image=None)
    result = await container_images.runtime().run(job)
    assert result.outcome is RunOutcome.OK, result
    assert "torch 2." in result.log_tail
    torch.manual_seed(11)
    a, b = torch.randn(128, 96), torch.randn(96, 64)
    np.testing.assert_array_equal(np.load(job.outputs_dir / "product.npy"), (a @ b).tanh().numpy())
    # String hashing is the same fixed one as in every sandbox.
    host_order = subprocess.run(
        [sys.executable, "-c", "print(','.join(sorted({'alpha', 'beta', 'gamma'}, key=hash)))"],
        env={"PYTHONHASHSEED": "0"}, capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    assert (job.outputs_dir / "hash_order.txt").read_text() == host_order
