"""The whole market on hosts of their own (network namespaces on a private bridge): the
demo job settles and its verified result comes back, with no two components sharing a
network stack, and `down` leaves no namespace behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devnet import netns, network
from devnet.demo import run_demo
from protocol.devnet_state import load_state

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        netns.unavailable_reason() is not None, reason=str(netns.unavailable_reason())
    ),
]


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_the_demo_job_settles_across_network_namespaces(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    try:
        report = network.up(state_file, providers=2, isolated=True)
        state = load_state(state_file)
        assert set(state.namespaces) <= namespaces() and len(state.namespaces) == 6
        # Every component is on its own network stack, reached by its own address.
        stacks = {p.name: os.readlink(f"/proc/{p.pid}/ns/net") for p in state.processes}
        services = ("anvil", "coordinator", "provider-0", "provider-1")
        assert len({stacks[name] for name in services}) == len(services)
        assert stacks["provider-0"] == stacks["ipfs-provider-0 (js-ipfs)"]  # its own node
        assert os.readlink("/proc/self/ns/net") not in stacks.values()
        endpoints = [state.rpc_url, state.coordinator_url, state.coordinator_multiaddr]
        endpoints += [node.api for node in state.ipfs_nodes.values()]
        assert all(e and "127.0.0.1" not in e for e in endpoints), endpoints
        assert report.state.coordinator_url == state.coordinator_url

        run_demo(state, tmp_path)  # submits, follows, fetches and verifies the result
        assert (tmp_path / "demo-result" / "summary.json").is_file()
    finally:
        if state_file.exists():
            recorded = set(load_state(state_file).namespaces)
            network.down(state_file)
            assert not recorded & namespaces()
