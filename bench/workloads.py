"""The workload examples' job code through the provider's own runtime, twice each.

For every example (embeddings, LLM inference, fine-tuning, synthetic data): make its inputs
with its ``prepare.py``, lay them out as a provider does (``inputs/<name>/``), run the
spec's entrypoint and arguments in the sandbox runtime the provider would use (``bwrap``
by default) twice, each in a fresh work directory, and report the throughput the job
logged (embeddings/s, tokens/s, steps/s), the sandbox's wall time, and whether the two
runs wrote identical bytes. ``--gpu`` takes the ``job-gpu.yaml`` specs and ``data-gpu/``
inputs and hands the sandbox GPU 0.

    python -m bench.workloads [--gpu] [--runtime bwrap] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio

from protocol.spec import TorchRuntime
from protocol.spec_io import load_spec
from provider_node.runtimes import PreparedJob, RunLimits, Runtime, create_runtime
from provider_node.runtimes.model import TorchEntrypoint

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WORKLOADS = ("embeddings", "llm-inference", "fine-tuning", "synthetic-data")
THROUGHPUT = re.compile(r"([0-9.]+) (embeddings/s|tokens/s|steps/s)")


def prepare(name: str, root: Path, gpu: bool, steps: int | None) -> Path:
    """A copy of example ``name`` under ``root`` with its inputs made."""
    shutil.copytree(EXAMPLES / "tinylm", root / "tinylm", dirs_exist_ok=True)
    shutil.copytree(EXAMPLES / name, root / name)
    args = ["--gpu"] if gpu else []
    if steps is not None and name != "embeddings":
        args += ["--steps", str(steps)]
    script = root / name / "prepare.py"
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True)
    return root / name


def lay_out(example: Path, spec_file: str, work: Path) -> tuple[PreparedJob, float]:
    """A work directory holding the spec's inputs, and the job ready for a runtime."""
    spec = load_spec(example / spec_file)
    runtime = spec.runtime
    assert isinstance(runtime, TorchRuntime)
    for item in spec.inputs:
        assert item.path is not None
        shutil.copytree((example / item.path).resolve(), work / "inputs" / item.name)
    (work / "outputs").mkdir()
    limits = RunLimits(
        wall_time_s=float(spec.timeout),
        memory_bytes=8 << 30,
        max_pids=512,
        max_output_bytes=int(spec.max_output),
    )
    entry = TorchEntrypoint(f"inputs/code/{runtime.entrypoint}", tuple(runtime.args))
    job = PreparedJob(f"bench-{work.name}", work, entry, limits, seed=1234)
    return job, float(spec.timeout)


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Run:
    wall_s: float
    rate: float | None
    unit: str
    outputs: str


async def run_once(runtime: Runtime, example: Path, spec_file: str, work: Path, gpu: bool) -> Run:
    job, _ = lay_out(example, spec_file, work)
    if gpu:
        job = replace(job, gpus=(0,))
    start = time.perf_counter()
    result = await runtime.run(job)
    wall = time.perf_counter() - start
    if result.exit_code != 0:
        raise SystemExit(f"{example.name}: {result.outcome} {result.detail}\n{result.log_tail}")
    found = THROUGHPUT.findall(result.log_tail)
    rate, unit = (float(found[-1][0]), found[-1][1]) if found else (None, "")
    return Run(wall, rate, unit, digest(job.outputs_dir))


async def run_twice(example: Path, spec_file: str, runtime_name: str, gpu: bool) -> dict[str, Any]:
    runtime = create_runtime(runtime_name)
    reason = runtime.unavailable_reason()
    if reason is not None:
        raise SystemExit(f"runtime {runtime_name} cannot run here: {reason}")
    first, second = [
        await run_once(
            runtime, example, spec_file, example.parent / f"work-{example.name}-{i}", gpu
        )
        for i in range(2)
    ]
    return {
        "example": example.name,
        "device": "cuda:0" if gpu else "cpu",
        "throughput": second.rate,
        "unit": second.unit,
        "throughput_first_run": first.rate,
        "sandbox_wall_s": round(second.wall_s, 3),
        "sandbox_wall_first_s": round(first.wall_s, 3),
        "identical_runs": first.outputs == second.outputs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="job-gpu.yaml specs on GPU 0")
    parser.add_argument("--runtime", default="bwrap", help="provider runtime (default bwrap)")
    parser.add_argument("--prepare-steps", type=int, help="training steps of the prepare steps")
    parser.add_argument("--only", choices=WORKLOADS, action="append", help="these examples only")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = parser.parse_args(argv)
    spec_file = "job-gpu.yaml" if args.gpu else "job.yaml"
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpumarket-workloads-") as tmp:
        for name in args.only or WORKLOADS:
            example = prepare(name, Path(tmp), args.gpu, args.prepare_steps)
            rows.append(trio.run(run_twice, example, spec_file, args.runtime, args.gpu))
    print(f"{'example':<16} {'device':<7} {'throughput':>14} {'unit':<13} {'wall s':>8} identical")
    for r in rows:
        rate = "-" if r["throughput"] is None else f"{r['throughput']:,.1f}"
        print(f"{r['example']:<16} {r['device']:<7} {rate:>14} {r['unit']:<13} "
              f"{r['sandbox_wall_s']:>8.2f} {r['identical_runs']}")  # fmt: skip
    if args.json:
        print(json.dumps({"runtime": args.runtime, "workloads": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
