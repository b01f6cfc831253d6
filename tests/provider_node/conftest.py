"""Helpers for provider-node tests: work directories laid out the way runtimes expect."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from provider_node.runtimes import CommandEntrypoint, Limits, PreparedJob, TorchEntrypoint

DEFAULT_LIMITS = Limits(
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
        limits: Limits = DEFAULT_LIMITS,
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
