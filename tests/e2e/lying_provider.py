"""A provider daemon whose sandbox lies: test-only, never part of the product.

``python -m tests.e2e.lying_provider`` replaces the ``bwrap`` runtime, in this process
only, by one that runs the job honestly and then flips one byte of its first output file,
and otherwise runs the normal ``gpumarket provider run`` entry point with the normal
``PROVIDER_*`` environment. Its commitment is therefore well-formed and signed, just wrong.

With ``LYING_PROVIDER_HOLD=DIR`` it also holds each corrupted result before committing to
it: it writes ``DIR/held`` and waits for ``DIR/release`` to appear, so a test can arrange
the rest of the market (start the providers that will check it) while the liar is seated.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from provider_node.runtimes import BwrapRuntime, PreparedJob, RunResult, register_runtime

HOLD_ENV = "LYING_PROVIDER_HOLD"
HOLD_POLL_S = 0.2


class LyingRuntime:
    """Runs the real sandbox, then corrupts the result it is about to commit to."""

    name = "bwrap"

    def __init__(self, **options: object) -> None:
        self.inner = BwrapRuntime(**options)  # type: ignore[arg-type]
        hold = os.environ.get(HOLD_ENV)
        self.hold = Path(hold) if hold else None

    def unavailable_reason(self) -> str | None:
        return self.inner.unavailable_reason()

    async def run(self, job: PreparedJob) -> RunResult:
        result = await self.inner.run(job)
        files = sorted(p for p in job.outputs_dir.rglob("*") if p.is_file() and not p.is_symlink())
        if files:
            data = bytearray(files[0].read_bytes())
            if data:
                data[len(data) // 2] ^= 0x01
                files[0].write_bytes(bytes(data))
        if self.hold is not None:
            await hold(self.hold, job.job_id)
        return result


async def hold(directory: Path, job_id: str) -> None:
    """Say the result is ready, then wait (without blocking the daemon) to be released."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "held").write_text(job_id)
    while not (directory / "release").exists():
        await trio.sleep(HOLD_POLL_S)


def main() -> None:
    register_runtime("bwrap", LyingRuntime)
    from gpumarket_cli import app

    sys.argv = ["gpumarket", "provider", "run"]
    app()


if __name__ == "__main__":
    main()
