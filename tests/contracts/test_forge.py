"""The Solidity tests (unit, fuzz and invariant) run by forge count as part of this suite."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
FORGE = CONTRACTS.parent / "node_modules" / ".bin" / "forge"


@pytest.mark.timeout(900)
def test_forge_test_passes() -> None:
    assert FORGE.exists(), f"forge not installed at {FORGE} (npm install)"
    proc = subprocess.run(
        [str(FORGE), "test"],
        cwd=CONTRACTS,
        capture_output=True,
        text=True,
        timeout=880,
        check=False,
    )
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"forge test failed:\n{tail}"
    assert "failed" not in proc.stdout.split("Ran ")[-1] or " 0 failed" in proc.stdout, tail
