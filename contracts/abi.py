"""Load the committed contract artifacts (ABI and bytecode) written by ``contracts.build``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str


@cache
def load_artifact(name: str) -> Artifact:
    """The artifact of one deployable contract: TestUSD or JobMarket."""
    data = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
    return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"])


def all_abis() -> list[list[dict[str, Any]]]:
    return [load_artifact(n).abi for n in ("TestUSD", "JobMarket")]
