"""Runtime pieces that need no sandbox: command lines, environment, output checks, registry."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

from protocol.errors import SandboxError
from provider_node.runtimes import (
    BwrapRuntime,
    CommandEntrypoint,
    EngineRuntime,
    PreparedJob,
    ProcessRuntime,
    RunLimits,
    TorchEntrypoint,
    create_runtime,
    default_runtime_name,
    runtime_names,
)
from provider_node.runtimes.env import job_env
from provider_node.runtimes.images import ImageRefused, check_cuda, image_cuda, parse_reference
from provider_node.runtimes.outputs import check_work_dir, scan_outputs
from tests.provider_node.conftest import DEFAULT_LIMITS, MakeJob


def _flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]


def _gpu_job(make_job: MakeJob, gpus: tuple[int, ...]) -> PreparedJob:
    job = make_job("print(1)", torch=True)
    return PreparedJob(job.job_id, job.work_dir, job.entrypoint, job.limits, 3, {}, gpus)


def test_registry_knows_the_runtimes() -> None:
    assert {"bwrap", "docker", "podman", "process"} <= set(runtime_names())
    assert isinstance(create_runtime("bwrap"), BwrapRuntime)
    podman = create_runtime("podman")
    assert isinstance(podman, EngineRuntime) and podman.name == "podman"
    with pytest.raises(SandboxError, match="unknown runtime"):
        create_runtime("chroot")


def test_default_runtime_is_never_process() -> None:
    assert default_runtime_name(order=("bwrap",)) == "bwrap"
    with pytest.raises(SandboxError, match="no sandbox runtime"):
        default_runtime_name(order=("process",))


async def test_process_runtime_is_refused_unless_unsafe(make_job: MakeJob) -> None:
    runtime = ProcessRuntime()
    assert runtime.unavailable_reason() is not None
    with pytest.raises(SandboxError, match="unsafe"):
        await runtime.run(make_job("print('should not run')"))
    assert ProcessRuntime(unsafe=True).unavailable_reason() is None


def test_limits_are_validated() -> None:
    with pytest.raises(SandboxError):
        RunLimits(wall_time_s=0, memory_bytes=1 << 30, max_pids=8, max_output_bytes=0)
    with pytest.raises(SandboxError):
        RunLimits(wall_time_s=1, memory_bytes=1024, max_pids=8, max_output_bytes=0)
    with pytest.raises(SandboxError):
        RunLimits(wall_time_s=1, memory_bytes=1 << 30, max_pids=1, max_output_bytes=0)


def test_job_env_is_built_from_nothing(make_job: MakeJob, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "leak")
    job = make_job("", seed=2**33 + 9, env={"MY_FLAG": "1"})
    env = job_env(job, root="/job", home="/home/job", tmp="/tmp", path="/usr/bin")
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["MY_FLAG"] == "1"
    assert env["GPUMARKET_SEED"] == str(2**33 + 9)
    assert env["PYTHONHASHSEED"] == "0"  # the same for every job (a warm start knows no seed)
    assert env["GPUMARKET_INPUT_DIR"] == "/job/inputs"
    assert env["GPUMARKET_OUTPUT_DIR"] == "/job/outputs"
    assert env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert env["CUDA_VISIBLE_DEVICES"] == ""


@pytest.mark.parametrize("name", ["CUDA_VISIBLE_DEVICES", "GPUMARKET_SEED", "HOME", "PATH"])
def test_job_env_cannot_override_reserved(make_job: MakeJob, name: str) -> None:
    job = make_job("", env={name: "x"})
    with pytest.raises(SandboxError, match=name):
        job_env(job, root="/job", home="/h", tmp="/tmp", path="/usr/bin")


def test_bwrap_argv_isolates(make_job: MakeJob) -> None:
    job = make_job("print(1)", torch=True)
    argv = BwrapRuntime(bwrap="/usr/bin/bwrap", python="/opt/py/bin/python").argv(job)
    assert argv[0] == "/usr/bin/bwrap"
    for flag in ("--unshare-all", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert "--share-net" not in argv
    # The outputs directory is the only writable bind; inputs are read-only.
    writable = _flag_values(argv, "--bind")
    assert writable == [str(job.outputs_dir.resolve())]
    assert str(job.inputs_dir.resolve()) in _flag_values(argv, "--ro-bind")
    assert not any("nvidia" in arg or arg == "/dev/kfd" for arg in argv)
    assert "/sys" not in argv
    for prefix in {sys.prefix, sys.base_prefix}:
        real = os.path.realpath(prefix)
        assert any(real == p or real.startswith(p + "/") for p in _flag_values(argv, "--ro-bind"))
    sep = argv.index("--")
    assert argv[sep + 1 :] == [
        "/opt/py/bin/python", "-s", "/gpumarket/launcher.py", "/job/inputs/code/main.py",
    ]  # fmt: skip


def test_bwrap_binds_gpu_nodes_only_when_assigned(make_job: MakeJob) -> None:
    with_gpu = BwrapRuntime().argv(_gpu_job(make_job, (1,)))
    without = BwrapRuntime().argv(_gpu_job(make_job, ()))
    assert "/sys" in with_gpu and "/sys" not in without
    # The sandbox holds only GPUs 1 and 3's nodes: without the driver's UUIDs (no NVIDIA
    # driver here) CUDA counts them from 0; HIP still reads the host's indices.
    env = BwrapRuntime().env(_gpu_job(make_job, (1, 3)))
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and env["HIP_VISIBLE_DEVICES"] == "1,3"


IMAGE = "registry.example/torch@sha256:" + "a" * 64
APP = "registry.example/app:2@sha256:" + "b" * 64


def test_docker_argv(make_job: MakeJob) -> None:
    job = _gpu_job(make_job, (2, 5))
    runtime = EngineRuntime(engine="docker", torch_image=IMAGE)
    argv = runtime.argv(job, "gpumarket-x")
    assert argv[:2] == ["docker", "run"]
    assert _flag_values(argv, "--network") == ["none"]
    assert _flag_values(argv, "--pull") == ["never"]
    assert "--read-only" in argv
    assert _flag_values(argv, "--memory") == [str(DEFAULT_LIMITS.memory_bytes)]
    assert _flag_values(argv, "--memory-swap") == [str(DEFAULT_LIMITS.memory_bytes)]
    assert _flag_values(argv, "--shm-size") == [str(DEFAULT_LIMITS.memory_bytes // 2)]
    assert _flag_values(argv, "--pids-limit") == [str(DEFAULT_LIMITS.max_pids)]
    assert _flag_values(argv, "--user") == ["65534:65534"]
    assert _flag_values(argv, "--cap-drop") == ["ALL"]
    assert _flag_values(argv, "--gpus") == ['"device=2,5"']
    assert "--device" not in argv
    assert [t.split(":")[0] for t in _flag_values(argv, "--tmpfs")] == ["/tmp", "/home/job"]
    volumes = _flag_values(argv, "--volume")
    assert f"{job.inputs_dir.resolve()}:/job/inputs:ro" in volumes
    assert [v for v in volumes if not v.endswith(":ro")] == [
        f"{job.outputs_dir.resolve()}:/job/outputs:rw"
    ]
    env = dict(v.split("=", 1) for v in _flag_values(argv, "--env"))
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"  # renumbered inside the container
    assert env["GPUMARKET_SEED"] == "3"
    sep = argv.index("--")
    assert argv[sep + 1 :] == [
        IMAGE, "python3", "-s", "/gpumarket/launcher.py", "/job/inputs/code/main.py",
    ]  # fmt: skip
    with_runc = EngineRuntime(engine="docker", torch_image=IMAGE, oci_runtime="runc")
    assert with_runc.argv(job, "x")[:4] == ["docker", "run", "--runtime", "runc"]


def test_podman_argv_passes_gpus_as_cdi_devices(make_job: MakeJob) -> None:
    job = _gpu_job(make_job, (2, 5))
    runtime = EngineRuntime(
        engine_name="podman", engine="podman", torch_image=IMAGE, oci_runtime="runc"
    )
    argv = runtime.argv(job, "gpumarket-x")
    assert argv[:4] == ["podman", "--runtime", "runc", "run"]
    assert _flag_values(argv, "--device") == ["nvidia.com/gpu=2", "nvidia.com/gpu=5"]
    assert "--gpus" not in argv
    assert "--device" not in runtime.argv(_gpu_job(make_job, ()), "y")


def test_shm_grows_with_the_job_memory(make_job: MakeJob) -> None:
    job = make_job("", limits=RunLimits(wall_time_s=1, memory_bytes=32 << 20, max_pids=8,
                                      max_output_bytes=0))  # fmt: skip
    argv = EngineRuntime(torch_image=IMAGE).argv(_gpu_job(make_job, ()), "x")
    small = EngineRuntime(torch_image=IMAGE).argv(
        PreparedJob(job.job_id, job.work_dir, TorchEntrypoint("main.py"), job.limits), "y"
    )
    assert _flag_values(argv, "--shm-size") == [str(256 << 20)]
    assert _flag_values(small, "--shm-size") == [str(64 << 20)]  # never below the default


def test_container_images_must_be_pinned_by_digest(make_job: MakeJob) -> None:
    job = make_job("")
    command_job = PreparedJob(
        job.job_id, job.work_dir, CommandEntrypoint(("run.sh", "--fast")), job.limits, image=APP,
    )  # fmt: skip
    argv = EngineRuntime(engine="docker").argv(command_job, "c")
    assert "--gpus" not in argv
    assert argv[argv.index("--") + 1 :] == [APP, "run.sh", "--fast"]
    assert not any("launcher" in arg for arg in argv)  # only torch jobs get the launcher
    tagged = PreparedJob(
        job.job_id, job.work_dir, CommandEntrypoint(("x",)), job.limits, image="app:2"
    )
    with pytest.raises(ImageRefused, match="not pinned by digest") as refused:
        EngineRuntime().argv(tagged, "c")
    assert refused.value.job_fault
    with pytest.raises(ImageRefused, match="not pinned by digest"):
        EngineRuntime(torch_image="pytorch/pytorch:2.5.1").argv(_gpu_job(make_job, ()), "c")
    with pytest.raises(SandboxError, match="PROVIDER_CONTAINER_TORCH_IMAGE"):
        EngineRuntime().argv(_gpu_job(make_job, ()), "c")
    no_image = PreparedJob(job.job_id, job.work_dir, CommandEntrypoint(("x",)), job.limits)
    with pytest.raises(SandboxError, match="image"):
        EngineRuntime().argv(no_image, "c")


def test_container_engine_missing_or_unconfigured_is_reported() -> None:
    reason = EngineRuntime(engine="/nonexistent/docker").unavailable_reason()
    assert reason is not None and "not installed" in reason
    reason = EngineRuntime(engine=sys.executable).unavailable_reason()
    assert reason is not None and "PROVIDER_CONTAINER_TORCH_IMAGE" in reason


@pytest.mark.parametrize(
    ("env", "labels", "expected"),
    [
        (["PATH=/bin", "CUDA_VERSION=12.4.1"], None, (12, 4)),
        (["NVIDIA_REQUIRE_CUDA=cuda>=12.6 brand=tesla,driver>=470", "CUDA_VERSION=12.4"],
         None, (12, 6)),
        (None, {"com.nvidia.cuda.version": "11.8.0"}, (11, 8)),
        (["CUDA_VERSION=12.1"], {"com.nvidia.cuda.version": "11.8"}, (12, 1)),
        (["CUDA_VERSION=bogus"], None, None),
        (["PATH=/bin"], {"other": "1"}, None),
        (None, None, None),
    ],
)  # fmt: skip
def test_image_cuda_is_read_from_the_config(
    env: list[str] | None, labels: dict[str, str] | None, expected: tuple[int, int] | None
) -> None:
    assert image_cuda(env, labels) == expected


def test_cuda_beyond_the_driver_is_refused() -> None:
    check_cuda("img", None, None)  # an image that declares no CUDA runs anywhere
    check_cuda("img", (12, 4), (12, 4))
    check_cuda("img", (11, 8), (13, 0))
    with pytest.raises(ImageRefused, match=r"CUDA 12\.6 .* CUDA 12\.4") as refused:
        check_cuda("img", (12, 6), (12, 4))
    assert not refused.value.job_fault
    with pytest.raises(ImageRefused, match="no NVIDIA driver"):
        check_cuda("img", (12, 6), None)


def test_references_parse_only_with_a_digest() -> None:
    ref = parse_reference(APP)
    assert (ref.name, ref.digest, str(ref)) == ("registry.example/app:2", "sha256:" + "b" * 64, APP)
    for bad in ("app:2", "app@sha256:" + "b" * 63, "app@sha256:" + "B" * 64, "@sha256:" + "b" * 64):
        with pytest.raises(ImageRefused):
            parse_reference(bad)


def test_scan_outputs(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y" * 5)
    (tmp_path / "d" / "link").symlink_to("../a")
    scan = scan_outputs(tmp_path, max_bytes=100)
    assert (scan.total_bytes, scan.entries, scan.problem) == (15, 4, None)
    assert scan_outputs(tmp_path, max_bytes=14).too_large
    assert scan_outputs(tmp_path, max_bytes=100, max_entries=3).too_large
    (tmp_path / "d" / "abs").symlink_to("/etc/passwd")
    assert "outside" in (scan_outputs(tmp_path, max_bytes=100).problem or "")
    (tmp_path / "d" / "abs").unlink()
    (tmp_path / "d" / "up").symlink_to("../../secret")
    assert "outside" in (scan_outputs(tmp_path, max_bytes=100).problem or "")
    (tmp_path / "d" / "up").unlink()
    os.mkfifo(tmp_path / "fifo")
    assert "special file" in (scan_outputs(tmp_path, max_bytes=100).problem or "")


def test_check_work_dir(make_job: MakeJob) -> None:
    job = make_job("")
    check_work_dir(job)
    (job.outputs_dir / "stale").write_text("left over")
    with pytest.raises(SandboxError, match="empty"):
        check_work_dir(job)
    bad = PreparedJob("j", job.work_dir / "missing", TorchEntrypoint("x.py"), job.limits)
    with pytest.raises(SandboxError, match="directory"):
        check_work_dir(bad)


def test_bwrap_probe_reports_missing_binary() -> None:
    reason = BwrapRuntime(bwrap="/nonexistent/bwrap").unavailable_reason()
    assert reason is not None and "not installed" in reason
    assert BwrapRuntime().unavailable_reason() is None  # bubblewrap and cgroups work here


def test_bwrap_binds_a_prefix_under_tmp_after_the_private_tmp(
    make_job: MakeJob, tmp_path: Path
) -> None:
    # A venv or checkout under /tmp must stay visible: the tmpfs goes first, binds on top.
    venv = tmp_path / "venv"
    venv.mkdir()
    argv = BwrapRuntime(extra_ro_paths=(str(venv),)).argv(make_job("print(1)", torch=True))
    pairs = list(itertools.pairwise(argv))
    tmpfs = pairs.index(("--tmpfs", "/tmp"))
    bind = pairs.index(("--ro-bind", str(venv.resolve())))
    assert tmpfs < bind
