"""One IPFS node per participant: content uploaded at one node reaches another's.

Starts two real daemons the way ``devnet up`` does (``start_nodes``: side by side, then
connected as swarm peers) and moves a job's inputs from the requester's node to a
provider's, and its outputs back, each side configured by the devnet's own environment.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from devnet.ipfs import IpfsNode, start_nodes
from devnet.services import ipfs_env
from protocol.devnet_state import DevnetState, IpfsEndpoint, ProcessRecord, save_state
from protocol.ipfs import KuboContentStore
from wallet.settings import WalletSettings

pytestmark = pytest.mark.integration


def noise(size: int, seed: int) -> bytes:
    return hashlib.shake_256(f"nodes:{seed}:{size}".encode()).digest(size)


SPAWNED: list[ProcessRecord] = []


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, IpfsNode]]:
    started = start_nodes(
        tmp_path_factory.mktemp("ipfs"), ["requester", "provider-0"], on_spawn=SPAWNED.append
    )
    try:
        yield started
    finally:
        for node in started.values():
            node.stop()


def test_every_daemon_is_reported_as_it_starts(nodes: dict[str, IpfsNode]) -> None:
    # `devnet up` records these in the state file at once, so `down` can stop them even
    # if `up` dies before they are ready.
    assert sorted(r.pid for r in SPAWNED) == sorted(n.process.pid for n in nodes.values())
    assert {r.name.split(" ")[0] for r in SPAWNED} == {"ipfs-requester", "ipfs-provider-0"}


def _state(nodes: dict[str, IpfsNode]) -> DevnetState:
    endpoints = {
        name: IpfsEndpoint(
            api=n.api_url, gateway=n.gateway_url, swarm=n.swarm_addr, workdir=str(n.repo.parent)
        )
        for name, n in nodes.items()
    }
    return DevnetState(ipfs_api=endpoints["requester"].api, ipfs_nodes=endpoints)


def _provider_store(state: DevnetState) -> KuboContentStore:
    env = ipfs_env(state, "provider-0", "PROVIDER_")
    return KuboContentStore(
        env["PROVIDER_IPFS_API"],
        timeout=30,
        peers=env["PROVIDER_IPFS_PEERS"].split(","),
        gateways=env["PROVIDER_IPFS_GATEWAYS"].split(","),
    )


@pytest.mark.timeout(120)
async def test_inputs_reach_the_provider_and_outputs_the_requester(
    nodes: dict[str, IpfsNode], tmp_path: Path
) -> None:
    state = _state(nodes)
    state_file = tmp_path / "state.json"
    save_state(state_file, state)
    wallet = WalletSettings(devnet_state=state_file).with_devnet()
    assert wallet.ipfs_api == nodes["requester"].api_url

    inputs = tmp_path / "inputs"
    (inputs / "data").mkdir(parents=True)
    (inputs / "main.py").write_bytes(b"print('hello')\n")
    (inputs / "data" / "big.bin").write_bytes(noise(3 * 262_144 + 11, 1))
    async with wallet.content_store() as requester:
        input_cid = await requester.add_directory(inputs)

    async with _provider_store(state) as provider:
        got = await provider.get(input_cid, tmp_path / "fetched", max_size=1 << 24)
        # The file bytes came straight from the requester's gateway, verified.
        assert provider.last_source == nodes["requester"].gateway_url
        output = noise(262_144 + 5, 2)
        output_cid = await provider.add_bytes(output)
    assert (got / "main.py").read_bytes() == b"print('hello')\n"
    assert (got / "data" / "big.bin").read_bytes() == (inputs / "data" / "big.bin").read_bytes()

    # Outputs live on the provider's node only; the wallet's node fetches them by bitswap.
    async with wallet.content_store() as requester:
        assert await requester.read_bytes(output_cid) == output
        assert requester.last_source == nodes["requester"].api_url


PIDFD_GETFD = 438
"""The pidfd_getfd(2) system call's number (the same on x86-64 and arm64)."""


def _connection_inodes(ports: set[int]) -> set[str]:
    """Socket inodes of established loopback TCP connections to or from ``ports``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        ends = {int(local.split(":")[1], 16), int(remote.split(":")[1], 16)}
        if state == "01" and ports & ends:
            inodes.add(inode)
    return inodes


def _nodelay_of(pid: int, inodes: set[str]) -> list[int]:
    """TCP_NODELAY of each of process ``pid``'s sockets among ``inodes``, read from a copy
    of its descriptor (pidfd_getfd: allowed on the test's own children)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    found = []
    try:
        for entry in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(entry)
            if not (target.startswith("socket:[") and target[8:-1] in inodes):
                continue
            fd = libc.syscall(PIDFD_GETFD, pidfd, int(entry.name), 0)
            if fd < 0:
                raise OSError(ctypes.get_errno(), f"pidfd_getfd on {entry}")
            with socket.socket(fileno=fd) as copy:
                found.append(copy.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    finally:
        os.close(pidfd)
    return found


def test_nodes_send_small_messages_at_once(nodes: dict[str, IpfsNode]) -> None:
    # Bitswap writes a stream per message; with Nagle's algorithm on, each small write
    # waited for the peer's delayed ACK, and a one-block fetch between two js-ipfs nodes
    # took about 250 ms. Both ends of the swarm connection must have Nagle off.
    inodes = _connection_inodes({int(n.swarm_addr.split("/")[4]) for n in nodes.values()})
    assert inodes, "the two nodes are not connected"
    for name, node in nodes.items():
        flags = _nodelay_of(node.process.pid, inodes)
        assert flags, f"{name}'s daemon holds no end of the swarm connection"
        assert all(flags), f"{name}'s swarm connections leave Nagle on: {flags}"
