"""Container jobs: what building the test image and starting a job in podman cost.

Builds the image the tests use (this host's Python with torch and numpy in a rootfs
tarball, ``podman import``; ``tests/provider_node/containerimage.py``), then runs the same
small job alternately through :class:`EngineRuntime` (podman, the image by digest, every
limit of a real run) and cold
through :class:`BwrapRuntime` (the host's Python), as the worker calls them. The job's first
line records the wall clock into its outputs; ``start_ms`` is that clock minus the clock
just before ``run(job)`` (image inspection, outputs ownership, the engine, the OCI runtime,
the interpreter), ``run_ms`` the whole call including removing the container.

    python -m bench.container_start [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import trio

from provider_node.runtimes import (
    BwrapRuntime,
    CommandEntrypoint,
    EngineRuntime,
    PreparedJob,
    RunLimits,
    Runtime,
)
from tests.provider_node.containerimage import import_image, write_python_rootfs

JOB = """
import time
stamp = time.time()
import json, os
out = os.environ["GPUMARKET_OUTPUT_DIR"]
with open(os.path.join(out, "stamp.json"), "w") as f:
    json.dump({"started_at": stamp, "total": sum(i * i for i in range(100_000))}, f)
"""
LIMITS = RunLimits(wall_time_s=120, memory_bytes=512 << 20, max_pids=64, max_output_bytes=1 << 20)


def make_job(root: Path, name: str, python: str, image: str | None) -> PreparedJob:
    work = root / name
    (work / "inputs" / "code").mkdir(parents=True)
    (work / "outputs").mkdir()
    (work / "inputs" / "code" / "main.py").write_text(textwrap.dedent(JOB))
    return PreparedJob(
        job_id=name,
        work_dir=work,
        entrypoint=CommandEntrypoint((python, "-s", "inputs/code/main.py")),
        limits=LIMITS,
        image=image,
    )


async def timed(runtime: Runtime, job: PreparedJob) -> tuple[float, float]:
    before = time.time()
    result = await runtime.run(job)
    after = time.time()
    if not result.ok:
        raise SystemExit(f"{runtime.name} run failed: {result}")
    started = json.loads((job.outputs_dir / "stamp.json").read_text())["started_at"]
    return (started - before) * 1000, (after - before) * 1000


async def measure(runs: int, root: Path) -> dict[str, Any]:
    engine = shutil.which("podman")
    if engine is None:
        raise SystemExit("podman is not installed: `make bootstrap` installs it")
    began = time.monotonic()
    tarball = root / "rootfs.tar"
    write_python_rootfs(tarball, packages=("torch", "numpy"))
    image = import_image([engine], tarball, "localhost/gpumarket-test-python")
    build_s = time.monotonic() - began
    image_mb = tarball.stat().st_size / 1e6
    oci_runtime = "runc" if shutil.which("runc") else None
    container = EngineRuntime(
        engine_name="podman", engine=engine, oci_runtime=oci_runtime, probe_image=image
    )
    began = time.monotonic()
    reason = container.unavailable_reason()
    probe_ms = (time.monotonic() - began) * 1000
    if reason is not None:
        raise SystemExit(f"podman cannot run containers here: {reason}")
    bwrap = BwrapRuntime()
    samples: dict[str, list[tuple[float, float]]] = {"podman": [], "bwrap": []}
    for i in range(runs):
        samples["podman"].append(
            await timed(container, make_job(root, f"bench-c{i}", "python3", image))
        )
        host_job = make_job(root, f"bench-b{i}", sys.executable, None)
        samples["bwrap"].append(await timed(bwrap, host_job))
    figures: dict[str, Any] = {
        "runs": runs,
        "image_build_s": round(build_s, 2),
        "image_tar_mb": round(image_mb, 1),
        "probe_ms": round(probe_ms),
        "engine": subprocess.run(
            [engine, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "oci_runtime": oci_runtime or "default",
    }
    subprocess.run([engine, "rmi", "--force", image], capture_output=True, check=False, timeout=120)
    for name, values in samples.items():
        figures[f"{name}_start_p50_ms"] = round(statistics.median(v[0] for v in values))
        figures[f"{name}_run_p50_ms"] = round(statistics.median(v[1] for v in values))
    return figures


def table(figures: dict[str, Any]) -> str:
    rows = [
        f"image: built in {figures['image_build_s']} s ({figures['image_tar_mb']} MB tar), "
        f"probe container {figures['probe_ms']} ms; {figures['engine']}, "
        f"OCI runtime {figures['oci_runtime']}",
        f"{'runtime':<8} {'start p50 ms':>13} {'run p50 ms':>11}   ({figures['runs']} runs each)",
    ]
    for name in ("podman", "bwrap"):
        rows.append(
            f"{name:<8} {figures[f'{name}_start_p50_ms']:>13} {figures[f'{name}_run_p50_ms']:>11}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpumarket-bench-") as tmp:
        figures = trio.run(measure, args.runs, Path(tmp))
    print(table(figures))
    if args.json:
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
