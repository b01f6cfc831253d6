"""Process start-up: every way into ``gpumarket`` restores a safe recursion limit.

py_ecc (imported through web3) raises the limit to 100,000, at which ``json.loads`` on
deeply nested input overflows the C stack and kills the process with no trace.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gpumarket_cli
from protocol.encoding import SAFE_RECURSION_LIMIT


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prepare_process_restores_the_limit_and_runs_before_every_command() -> None:
    previous = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(100_000)
        gpumarket_cli.prepare_process()
        assert sys.getrecursionlimit() == SAFE_RECURSION_LIMIT
    finally:
        sys.setrecursionlimit(previous)
    callback = gpumarket_cli.app.registered_callback
    assert callback is not None and callback.callback is gpumarket_cli.prepare_process


def test_importing_the_cli_leaves_a_limit_at_which_deep_json_raises_instead_of_crashing() -> None:
    done = _python(
        """
        import json, sys
        import gpumarket_cli
        assert "py_ecc" in sys.modules, "py_ecc no longer imported: this test proves nothing"
        print(sys.getrecursionlimit())
        try:
            json.loads("[" * 100_000 + "]" * 100_000)
        except RecursionError:
            print("RecursionError")
        """
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.split() == [str(SAFE_RECURSION_LIMIT), "RecursionError"]


def test_python_dash_m_gpumarket_cli_runs_the_same_setup() -> None:
    done = _python(
        """
        import runpy, sys
        sys.argv = ["gpumarket", "--help"]
        try:
            runpy.run_module("gpumarket_cli", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        print("limit", sys.getrecursionlimit())
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == f"limit {SAFE_RECURSION_LIMIT}"
