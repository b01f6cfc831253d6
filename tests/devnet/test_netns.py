"""The isolated devnet's network: hosts in namespaces of their own reach each other by
address only, the machine reaches them all, and closing leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devnet import netns
from protocol.errors import DevnetError

pytestmark = pytest.mark.skipif(
    netns.unavailable_reason() is not None, reason=str(netns.unavailable_reason())
)

SERVE = (
    "import http.server,sys;"
    "http.server.HTTPServer((sys.argv[1], 8000), http.server.SimpleHTTPRequestHandler)"
    ".serve_forever()"
)


def fetch(host: netns.Host | None, url: str) -> bool:
    code = f"import urllib.request;urllib.request.urlopen({url!r}, timeout=2)"
    argv = [sys.executable, "-c", code]
    done = subprocess.run(host.argv(argv) if host else argv, capture_output=True, timeout=20)
    return done.returncode == 0


def existing() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_hosts_reach_each_other_by_address_and_nothing_is_left() -> None:
    with netns.Network() as net:
        server, client = net.add("server"), net.add("client")
        assert server.address != client.address
        proc = subprocess.Popen(server.argv([sys.executable, "-c", SERVE, server.address]))
        try:
            for _ in range(50):  # bounded wait for the server to bind
                if fetch(client, f"http://{server.address}:8000/"):
                    break
            assert fetch(client, f"http://{server.address}:8000/")
            assert fetch(None, f"http://{server.address}:8000/")  # the machine reaches it
            assert not fetch(client, "http://127.0.0.1:8000/")  # its own loopback is its own
        finally:
            proc.kill()
            proc.wait()
        names = set(net.namespaces())
        assert names <= existing()
    assert not names & existing()
    net.close()  # idempotent


def test_bad_host_names_are_refused_with_what_to_use() -> None:
    with netns.Network() as net, pytest.raises(DevnetError, match="lower-case letters"):
        net.add("Bad_Name")
