"""Helpers for provider-node tests: work directories laid out the way runtimes expect."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provider_node.runtimes import (
    CommandEntrypoint,
    EngineRuntime,
    PreparedJob,
    RunLimits,
    TorchEntrypoint,
)
from tests.provider_node.containerimage import derive_image, import_image, write_python_rootfs

DEFAULT_LIMITS = RunLimits(
    wall_time_s=30, memory_bytes=512 << 20, max_pids=64, max_output_bytes=1 << 20
)

MakeJob = Callable[..., PreparedJob]


@pytest.fixture
def make_job(tmp_path: Path) -> MakeJob:
    """Build a work dir holding ``code`` as ``inputs/code/main.py`` and return its job."""
    counter = iter(range(1_000_000))

    def build(
        code: str,
        *,
        limits: RunLimits = DEFAULT_LIMITS,
        torch: bool = False,
        seed: int = 7,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        extra_inputs: dict[str, bytes] | None = None,
    ) -> PreparedJob:
        work = tmp_path / f"work{next(counter)}"
        code_dir = work / "inputs" / "code"
        code_dir.mkdir(parents=True)
        (work / "outputs").mkdir()
        (code_dir / "main.py").write_text(textwrap.dedent(code))
        for name, data in (extra_inputs or {}).items():
            (code_dir / name).write_bytes(data)
        entry: CommandEntrypoint | TorchEntrypoint
        if torch:
            entry = TorchEntrypoint("inputs/code/main.py", args)
        else:
            entry = CommandEntrypoint((sys.executable, "-s", "inputs/code/main.py", *args))
        return PreparedJob(
            job_id=f"test-{uuid.uuid4().hex[:12]}-{work.name}",
            work_dir=work,
            entrypoint=entry,
            limits=limits,
            seed=seed,
            env=env or {},
        )

    return build


@dataclass(frozen=True)
class ContainerImages:
    """The container engine the tests drive and the images built for them this session."""

    engine: str
    oci_runtime: str | None
    python: str
    """Digest-pinned: this host's Python with torch and numpy, and /bin/sh."""
    cuda: str
    """The same image declaring ``CUDA_VERSION=99.1.0`` (newer than any driver runs)."""

    def runtime(self, **options: Any) -> EngineRuntime:
        defaults: dict[str, Any] = {
            "engine": self.engine,
            "oci_runtime": self.oci_runtime,
            "torch_image": self.python,
            "pull": False,
        }
        return EngineRuntime(engine_name="podman", **{**defaults, **options})


@pytest.fixture(scope="session")
def container_images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerImages]:
    """Build the test image once per session (there is no registry to pull from)."""
    engine = shutil.which("podman")
    if engine is None:
        pytest.fail("podman is not installed: `make bootstrap` installs it (Makefile APT_PACKAGES)")
    # crun refuses hosts whose cgroup v2 hierarchy holds controllers beside v1 (hybrid mode);
    # runc runs there, and everywhere else too.
    oci_runtime = "runc" if shutil.which("runc") else None
    work = tmp_path_factory.mktemp("image")
    tarball = work / "rootfs.tar"
    write_python_rootfs(tarball, packages=("torch", "numpy"))
    python = import_image([engine], tarball, "localhost/gpumarket-test-python")
    tarball.unlink()
    cuda = derive_image(
        [engine], python, "localhost/gpumarket-test-cuda", {"CUDA_VERSION": "99.1.0"}, work
    )
    yield ContainerImages(engine, oci_runtime, python, cuda)
    # This session's images only (by digest): the layers stay while another image uses them.
    subprocess.run(
        [engine, "rmi", "--force", cuda, python], capture_output=True, check=False, timeout=120
    )
