"""`make demo`: bring the local market up, show it working, bring it down.

Everything started here is stopped in ``finally``, whatever happens in between.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console

from devnet import network
from devnet.cli import _endpoints_table
from protocol.errors import GpuMarketError

console = Console()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the gpumarket demo on a local devnet.")
    parser.add_argument("--state", type=Path, default=Path(".devnet/demo-state.json"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        report = network.up(args.state, progress=lambda m: console.print(f"[dim]{m}...[/dim]"))
    except GpuMarketError as exc:
        console.print(f"[red]devnet up failed:[/red] {exc}")
        return 1
    try:
        console.print(_endpoints_table(report.state))
        for step, seconds in report.steps:
            console.print(f"  {step:<12} ready in {seconds:5.2f}s")
        checks = network.status(args.state)
        for check in checks:
            mark = "[green]ok[/green]" if check.ok else "[red]FAILED[/red]"
            console.print(f"  {mark} {check.name}: {check.detail}")
        if not all(c.ok for c in checks):
            return 1
    finally:
        stopped = network.down(args.state)
        console.print(f"devnet down: stopped {', '.join(stopped)}")
    console.print(f"demo finished in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
