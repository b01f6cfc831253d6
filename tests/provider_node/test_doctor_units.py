"""Each check of ``provider doctor`` on controlled inputs: the verdict, the must-have flag
and the fix it prints."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from protocol.ids import to_wei
from protocol.p2p.addresses import probe_sync
from provider_node import doctor
from provider_node.doctor import (
    CgroupFacts,
    Check,
    CheckStatus,
    ContainerFacts,
    HostProbes,
    NvmlFacts,
    Report,
    TorchFacts,
)

CPU_TORCH = TorchFacts(version="2.11.0+cpu")
NO_NVML = NvmlFacts(available=False, error="pynvml (nvidia-ml-py) is not installed")
H200 = "NVIDIA H200"
GPU_TORCH = TorchFacts(version="2.11.0+cu128", cuda="12.8", devices=(H200,))
GPU_NVML = NvmlFacts(available=True, driver="580.159", cuda_driver="13.0", devices=(H200,))


class FakeNvml:
    """The part of pynvml the doctor reads, for one H200 on driver 580.159 (CUDA 13.0)."""

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 13000

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> SimpleNamespace:
        return SimpleNamespace(index=index)

    def nvmlDeviceGetName(self, handle: SimpleNamespace) -> bytes:
        return b"NVIDIA H200"


def test_nvml_facts_are_read_from_the_library() -> None:
    facts = doctor.probe_nvml(FakeNvml())
    assert facts == NvmlFacts(
        available=True, driver="580.159", cuda_driver="13.0", devices=("NVIDIA H200",)
    )


def test_a_cpu_only_host_passes_only_when_it_offers_the_cpu() -> None:
    offered = doctor.check_gpus(CPU_TORCH, NO_NVML, cpu_only=True)
    assert offered.verdict is CheckStatus.OK and offered.must_have
    refused = doctor.check_gpus(CPU_TORCH, NO_NVML, cpu_only=False)
    assert refused.blocking
    assert refused.fix is not None and "PROVIDER_CPU_ONLY=true" in refused.fix


def test_gpus_nvml_sees_but_torch_does_not_fail_with_the_torch_fix() -> None:
    check = doctor.check_gpus(CPU_TORCH, GPU_NVML, cpu_only=False)
    assert check.blocking
    assert "NVML lists 1 GPU(s)" in check.found and "CPU only" in check.found
    assert check.fix == doctor.TORCH_CUDA_FIX


def test_gpus_seen_by_both_are_ok_and_without_nvml_a_warning() -> None:
    assert doctor.check_gpus(GPU_TORCH, GPU_NVML, cpu_only=False).verdict is CheckStatus.OK
    alone = doctor.check_gpus(GPU_TORCH, NO_NVML, cpu_only=False)
    assert alone.verdict is CheckStatus.WARN and not alone.must_have
    assert alone.fix == doctor.NVML_FIX
    hidden = NvmlFacts(available=True, driver="580", cuda_driver="13.0", devices=(H200, H200))
    partial = doctor.check_gpus(GPU_TORCH, hidden, cpu_only=False)
    assert partial.verdict is CheckStatus.WARN and "CUDA_VISIBLE_DEVICES" in partial.found


def test_gpus_without_torch_fail() -> None:
    check = doctor.check_gpus(
        TorchFacts(version=None, error="No module named 'torch'"), NO_NVML, cpu_only=True
    )
    assert check.blocking and "torch does not import" in check.found


def test_driver_older_than_torchs_cuda_fails_and_names_both_versions() -> None:
    old = NvmlFacts(available=True, driver="535.104", cuda_driver="12.2", devices=(H200,))
    check = doctor.check_driver(GPU_TORCH, old)
    assert check.blocking
    assert "12.2" in check.found and "12.8" in check.found
    assert check.fix is not None and "CUDA 12.8" in check.fix
    assert doctor.check_driver(GPU_TORCH, GPU_NVML).verdict is CheckStatus.OK
    newer = TorchFacts(version="2.12", cuda="13.1", devices=(H200,))
    assert doctor.check_driver(newer, GPU_NVML).blocking  # 13.1 > 13.0
    assert doctor.check_driver(CPU_TORCH, NO_NVML).verdict is CheckStatus.OK


def test_bwrap_is_a_must_have_only_for_the_bwrap_runtime() -> None:
    reason = "bwrap cannot create its namespaces: setting up uid map: Permission denied"
    failed = doctor.check_bwrap(reason, runtime="bwrap")
    assert failed.blocking and failed.fix is not None and "userns" in failed.fix
    other = doctor.check_bwrap(reason, runtime="docker")
    assert other.verdict is CheckStatus.WARN and not other.blocking
    missing = doctor.check_bwrap("bubblewrap (bwrap) is not installed", runtime="bwrap")
    assert missing.fix is not None and "apt-get install bubblewrap" in missing.fix
    assert doctor.check_bwrap(None, runtime="bwrap").verdict is CheckStatus.OK


def test_cgroup_v2_without_delegation_names_the_systemd_setting() -> None:
    facts = CgroupFacts(
        version=2,
        own_path="/user.slice/user-0.slice/session-3.scope",
        under_systemd_unit="session-3.scope",
    )
    check = doctor.check_cgroups(
        "cgroup v2 controllers not delegated at /sys/fs/cgroup/user.slice/gpumarket",
        facts,
        runtime="bwrap",
    )
    assert check.blocking
    assert check.fix is not None
    assert "Delegate=yes" in check.fix and doctor.UNIT_FILE in check.fix
    assert "session-3.scope" in check.fix
    assert Path(__file__).resolve().parents[2].joinpath(doctor.UNIT_FILE).is_file()
    v1 = doctor.check_cgroups(
        "no cgroup hierarchy offers the pids controller",
        CgroupFacts(version=None, own_path="/"),
        runtime="bwrap",
    )
    assert v1.fix is not None and "unified_cgroup_hierarchy" in v1.fix
    fine = doctor.check_cgroups(None, CgroupFacts(version=1, own_path="/"), runtime="bwrap")
    assert fine.verdict is CheckStatus.OK


def test_container_engine_is_judged_by_the_runtime_that_needs_it() -> None:
    absent = ContainerFacts(engine=None)
    assert doctor.check_container(absent, runtime="bwrap", gpus=0).verdict is CheckStatus.OK
    assert doctor.check_container(absent, runtime="docker", gpus=0).blocking
    silent = ContainerFacts("docker", answers=False, detail="Cannot connect to the Docker daemon")
    assert doctor.check_container(silent, runtime="bwrap", gpus=0).verdict is CheckStatus.WARN
    down = doctor.check_container(silent, runtime="docker", gpus=0)
    assert down.blocking and down.fix == "start it: `systemctl start docker`"
    no_gpu = doctor.check_container(
        ContainerFacts("docker", answers=True), runtime="docker", gpus=1
    )
    assert no_gpu.blocking and no_gpu.fix is not None and "nvidia-ctk" in no_gpu.fix
    gpu = ContainerFacts("podman", answers=True, gpu_access=True)
    assert doctor.check_container(gpu, runtime="docker", gpus=1).verdict is CheckStatus.OK
    # Another engine answering does not help when the docker runtime's own probe fails.
    engine_down = doctor.check_container(
        gpu, runtime="docker", gpus=1, runtime_reason="no docker engine answers"
    )
    assert engine_down.blocking and "no docker engine answers" in engine_down.found
    # podman is a container runtime of its own: its probe decides for PROVIDER_RUNTIME=podman.
    crun = "crun: cgroups in hybrid mode not supported; set PROVIDER_CONTAINER_OCI_RUNTIME=runc"
    refused = doctor.check_container(gpu, runtime="podman", gpus=0, runtime_reason=crun)
    assert refused.blocking and refused.found.startswith("PROVIDER_RUNTIME=podman cannot run")
    assert doctor.check_container(gpu, runtime="podman", gpus=0).verdict is CheckStatus.OK


def test_cdi_spec_for_nvidia_counts_as_gpu_access(tmp_path: Path) -> None:
    assert not doctor.cdi_has_nvidia([tmp_path])
    (tmp_path / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    assert doctor.cdi_has_nvidia([tmp_path])


def test_disk_fails_below_one_job_and_warns_below_every_slot() -> None:
    gib = 1 << 30
    need = (2 * gib, 10 * gib)
    assert doctor.check_disk(Path("/w"), 11 * gib, need).verdict is CheckStatus.OK
    short = doctor.check_disk(Path("/w"), 5 * gib, need)
    assert short.verdict is CheckStatus.WARN and not short.blocking
    full = doctor.check_disk(Path("/w"), gib, need)
    assert full.blocking and full.fix is not None and "PROVIDER_WORK_DIR" in full.fix
    broken = doctor.check_disk(Path("/w"), None, need, "Permission denied")
    assert broken.blocking and "Permission denied" in broken.found


def test_disk_probe_needs_a_writable_directory(tmp_path: Path) -> None:
    free, error = doctor.probe_disk(tmp_path / "work")
    assert error is None and free is not None and free > 0
    blocker = tmp_path / "file"
    blocker.write_text("")
    free, error = doctor.probe_disk(blocker / "work")
    assert free is None and error is not None


def test_a_held_port_fails_and_names_the_variable() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        error = doctor.probe_port("127.0.0.1", port)
        assert error is not None
        check = doctor.check_port("127.0.0.1", port, "PROVIDER_METRICS_PORT", error)
        assert check.blocking and check.fix is not None and "PROVIDER_METRICS_PORT" in check.fix
    assert doctor.probe_port("127.0.0.1", port) is None
    loopback = doctor.check_port("127.0.0.1", 0, "PROVIDER_P2P_PORT", None)
    assert loopback.verdict is CheckStatus.WARN and "PROVIDER_LISTEN" in (loopback.fix or "")
    assert doctor.check_port("0.0.0.0", 4001, "PROVIDER_P2P_PORT", None).verdict is CheckStatus.OK


def test_listening_everywhere_without_an_announce_address_is_warned() -> None:
    bare = doctor.check_announce("/ip4/0.0.0.0/tcp/4001", ())
    assert bare.verdict is CheckStatus.WARN and "PROVIDER_ANNOUNCE" in (bare.fix or "")
    announced = doctor.check_announce("/ip4/0.0.0.0/tcp/4001", ("/ip4/203.0.113.7/tcp/4001",))
    assert announced.verdict is CheckStatus.OK and "203.0.113.7" in announced.found


def test_a_coordinator_address_where_nothing_listens_is_named_with_the_fix() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the connection is refused
        peer = "16Uiu2HAmCoordinatorPeerIdForTheDoctorTest"
        addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}"
        check = doctor.check_coordinator(addr, probe_sync(addr.split("/p2p/")[0]))
    assert check.verdict is CheckStatus.FAIL
    assert f"coordinator {peer} does not answer at {addr}: connection refused" in check.found
    assert "PROVIDER_COORDINATOR_MULTIADDR" in (check.fix or "")
    assert "COORDINATOR_ANNOUNCE" in (check.fix or "")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}"
        ok = doctor.check_coordinator(addr, probe_sync(addr.split("/p2p/")[0]))
    assert ok.verdict is CheckStatus.OK


def test_ipfs_that_does_not_answer_fails() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    api = f"http://127.0.0.1:{port}"
    version, error = doctor.probe_ipfs(api)
    assert version is None and error
    check = doctor.check_ipfs(api, version, error)
    assert check.blocking and check.fix is not None and "PROVIDER_IPFS_API" in check.fix


def test_stake_registration_and_gas_verdicts() -> None:
    ten = to_wei("10")
    assert doctor.check_stake(ten, 0, ten).verdict is CheckStatus.OK
    topped = doctor.check_stake(0, ten, ten)
    assert topped.verdict is CheckStatus.OK and "bonds the missing 10 " in topped.found
    short = doctor.check_stake(to_wei("4"), to_wei("1"), ten)
    assert short.blocking and short.fix == "send the account 5 tokens, or lower PROVIDER_STAKE"
    assert doctor.check_registration(True, gas_short=None).verdict is CheckStatus.OK
    assert doctor.check_registration(False, gas_short=None).verdict is CheckStatus.WARN
    assert doctor.check_registration(False, gas_short="0x1 holds 0 ETH").blocking
    assert doctor.check_gas(None, None).verdict is CheckStatus.OK
    assert doctor.check_gas("too little for 2 jobs", None).verdict is CheckStatus.WARN
    assert doctor.check_gas(None, "0x1 holds 0 ETH").blocking


@pytest.mark.parametrize(
    ("skew", "verdict"),
    [(0, CheckStatus.OK), (-8, CheckStatus.OK), (15, CheckStatus.WARN), (-60, CheckStatus.FAIL)],
)
def test_clock_skew(skew: int, verdict: CheckStatus) -> None:
    check = doctor.check_clock(1_000_000.0 + skew, 1_000_000, ttl_s=20)
    assert check.verdict is verdict and not check.must_have
    assert ("behind" if skew < 0 else "ahead of") in check.found


def test_report_lines_name_the_blocking_checks() -> None:
    report = Report(
        (
            Check("gpus", CheckStatus.OK, True, "fine"),
            Check("stake", CheckStatus.FAIL, True, "too little", "send tokens"),
            Check("clock", CheckStatus.WARN, False, "skewed", "sync it"),
        )
    )
    assert [c.name for c in report.blocking] == ["stake"]
    lines = doctor.report_lines(report)
    assert lines[1] == "FAIL stake (must-have): too little; fix: send tokens"
    assert lines[-1] == "not ready: 1 must-have check(s) failed (stake)"
    assert report.view()["ready"] is False


def test_host_checks_for_the_process_runtime_skip_what_it_cannot_need() -> None:
    calls: list[str] = []

    def bwrap() -> str | None:
        calls.append("bwrap")
        return None

    probes = HostProbes(
        torch=lambda: CPU_TORCH,
        nvml=lambda: NO_NVML,
        bwrap=bwrap,
        container=lambda: ContainerFacts(engine=None),
    )
    checks = doctor.host_checks(probes, runtime="process", cpu_only=True, required_only=True)
    assert [c.name for c in checks] == ["gpus", "driver"] and calls == []
    everything = doctor.host_checks(probes, runtime="process", cpu_only=True)
    assert [c.name for c in everything] == ["gpus", "driver", "bwrap", "cgroups", "container"]


def test_job_cgroups_go_beside_the_daemons_leaf(tmp_path: Path) -> None:
    from provider_node.runtimes import cgroups

    service = tmp_path / "gpumarket-provider.service"
    leaf = service / cgroups.DAEMON_LEAF
    leaf.mkdir(parents=True)
    assert cgroups._job_parent(leaf) == service  # the daemon already moved into its leaf
    (service / "cgroup.subtree_control").write_text("memory pids\n")
    assert cgroups._job_parent(service) == service  # controllers already handed down
    plain = tmp_path / "plain"
    plain.mkdir()
    assert cgroups._job_parent(plain) == plain  # not a cgroup: left for the caller to report


def test_a_daemon_sharing_its_cgroup_moves_into_the_leaf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cgroup v2 refuses (EBUSY) to hand controllers down from a cgroup holding processes;
    the daemon then moves itself into its leaf. (A stand-in directory: this machine has no
    cgroup v2 controllers to try it on.)"""
    import errno
    import os

    from provider_node.runtimes import cgroups

    service = tmp_path / "gpumarket-provider.service"
    service.mkdir()
    (service / "cgroup.subtree_control").write_text("")
    real_write = Path.write_text
    refused: list[Path] = []

    def write_text(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if self.name == "cgroup.subtree_control" and not refused:
            refused.append(self)
            raise OSError(errno.EBUSY, "Device or resource busy")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_text", write_text)
    assert cgroups._job_parent(service) == service
    assert refused == [service / "cgroup.subtree_control"]
    moved = service / cgroups.DAEMON_LEAF / "cgroup.procs"
    assert moved.read_text() == str(os.getpid())
