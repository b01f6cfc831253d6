"""Running the external commands the doctor's probes ask, each bounded in time."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

PROBE_TIMEOUT_S = 20.0
"""Longest any one external command or request of the doctor may take."""


def run_command(argv: Sequence[str], timeout: float = PROBE_TIMEOUT_S) -> tuple[int, str, str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, "", str(exc)
    return (
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )
