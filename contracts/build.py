"""Compile ``contracts/src`` with the pinned solc and write ABI + bytecode artifacts.

Run ``python -m contracts.build``. The compiler is ``contracts/tools/solc`` (the npm solcjs
behind a small command line), the same one forge uses, with the settings below mirrored in
``foundry.toml``. Each artifact records a hash of every source and of the settings, so
:func:`stale_artifacts` can tell (cheaply, without compiling) when ``src/`` changed after the
artifacts were written.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

CONTRACTS_DIR = Path(__file__).resolve().parent
SRC_DIR = CONTRACTS_DIR / "src"
ARTIFACTS_DIR = CONTRACTS_DIR / "artifacts"
SOLC = CONTRACTS_DIR / "tools" / "solc"

# The deployable contracts. JobMarket deploys JobMarketExt itself and forwards to it every
# call it does not serve, so the market's ABI is the union of both (one address, one ABI).
CONTRACT_NAMES = ("TestUSD", "JobMarket")
EXTENSIONS = {"JobMarket": "JobMarketExt"}
EIP170_LIMIT = 24_576

SETTINGS: dict[str, Any] = {
    "evmVersion": "cancun",
    "viaIR": True,
    "optimizer": {"enabled": True, "runs": 1_000_000},
    "metadata": {"bytecodeHash": "none"},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


def source_files() -> list[Path]:
    """The Solidity sources compiled, in name order."""
    return sorted(SRC_DIR.glob("*.sol"))


def sources_hash() -> str:
    """sha256 over the settings and every source's name and bytes, in a fixed order."""
    digest = hashlib.sha256(json.dumps(SETTINGS, sort_keys=True).encode())
    for path in source_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def compile_sources() -> dict[str, Any]:
    """Run solc in standard-JSON mode; raise RuntimeError with solc's messages on errors."""
    request = {
        "language": "Solidity",
        "sources": {f"src/{p.name}": {"content": p.read_text()} for p in source_files()},
        "settings": SETTINGS,
    }
    proc = subprocess.run(
        [str(SOLC), "--standard-json"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=CONTRACTS_DIR,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"solc failed ({proc.returncode}): {proc.stderr.strip()}")
    output: dict[str, Any] = json.loads(proc.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise RuntimeError("\n".join(e.get("formattedMessage", e["message"]) for e in errors))
    return output


def solc_version() -> str:
    """The version the pinned ``solc`` binary reports (recorded in each artifact)."""
    proc = subprocess.run(
        [str(SOLC), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    return proc.stdout.strip().splitlines()[-1].removeprefix("Version: ")


def build() -> list[Path]:
    """Compile and write one ``artifacts/<Name>.json`` per deployable contract."""
    output = compile_sources()
    version = solc_version()
    src_hash = sources_hash()
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    compiled_by_name = {
        name: compiled for unit in output["contracts"].values() for name, compiled in unit.items()
    }
    for name, compiled in compiled_by_name.items():
        size = len(compiled["evm"]["deployedBytecode"]["object"]) // 2
        if size > EIP170_LIMIT:
            raise RuntimeError(f"{name} is {size} bytes deployed, over the EIP-170 limit")
    written = []
    for name, compiled in compiled_by_name.items():
        if name not in CONTRACT_NAMES:
            continue
        abi = list(compiled["abi"])
        extension = EXTENSIONS.get(name)
        if extension is not None:
            abi = _union_abi(abi, compiled_by_name[extension]["abi"])
        artifact = {
            "contractName": name,
            "abi": abi,
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            "compiler": version,
            "settings": {k: v for k, v in SETTINGS.items() if k != "outputSelection"},
            "sourcesHash": src_hash,
        }
        path = ARTIFACTS_DIR / f"{name}.json"
        path.write_text(json.dumps(artifact, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def _union_abi(core: list[dict[str, Any]], extension: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The core's ABI plus every function, event and error of the extension it does not
    already have (the extension's constructor is internal to the deployment)."""

    def key(item: dict[str, Any]) -> tuple[str, str, str]:
        inputs = ",".join(i["type"] for i in item.get("inputs", []))
        return item["type"], item.get("name", ""), inputs

    seen = {key(item) for item in core}
    extra = [
        item
        for item in extension
        if item["type"] in ("function", "event", "error") and key(item) not in seen
    ]
    return core + extra


def stale_artifacts() -> list[str]:
    """Names of artifacts that are missing or were built from other sources or settings."""
    current = sources_hash()
    stale = []
    for name in CONTRACT_NAMES:
        path = ARTIFACTS_DIR / f"{name}.json"
        if not path.exists() or json.loads(path.read_text()).get("sourcesHash") != current:
            stale.append(name)
    return stale


def main() -> int:
    """Build every artifact and print each one's deployed size; the exit status."""
    for path in build():
        size = (len(json.loads(path.read_text())["deployedBytecode"]) - 2) // 2
        print(f"wrote {path.relative_to(CONTRACTS_DIR.parent)} ({size} bytes deployed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
