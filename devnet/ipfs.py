"""A supervised IPFS daemon (Kubo if available, else the pinned js-ipfs) on loopback.

The node is configured to stay on this machine: every address on 127.0.0.1, no bootstrap
peers, no public routing, no mDNS. It serves the Kubo RPC API at ``/api/v0``, a read-only
HTTP gateway (``/ipfs/<cid>``, what other participants may read content from directly) and
a libp2p swarm address other nodes connect to (:func:`connect_nodes`). A restarted node
(:meth:`IpfsNode.restart`) keeps its repo, peer id and ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devnet.netns import Host
from devnet.process import free_port, log_tail, require_free_port, spawn, stop, wait_ready
from devnet.tools import kubo_binary, npm_tool
from protocol.devnet_state import ProcessRecord
from protocol.errors import DevnetError

INIT_TIMEOUT = 120.0


@dataclass
class IpfsNode:
    api_url: str
    repo: Path
    flavour: str
    process: ProcessRecord
    gateway_url: str = ""
    swarm_addr: str = ""
    """The swarm multiaddr with ``/p2p/<peer id>``, what another node's ``swarm/connect`` takes."""
    timeout: float = 60.0

    def stop(self) -> None:
        stop_ipfs(self.api_url, self.process, self.repo)

    def restart(self) -> None:
        """Stop the daemon and start it again on the same repo, identity and ports."""
        self.process = restart_ipfs(self.process, self.api_url, self.repo, self.timeout)


def restart_ipfs(
    record: ProcessRecord,
    api_url: str,
    repo: Path,
    timeout: float = 60.0,
    on_spawn: Callable[[ProcessRecord], None] | None = None,
) -> ProcessRecord:
    """Stop the daemon of ``record`` and start it again on ``repo`` (same identity and
    ports, so its peers and gateway users find it where it was); returns the new process
    once its API at ``api_url`` answers (``on_spawn`` is told it as soon as it exists).
    Loopback nodes only (not an isolated host's)."""
    stop_ipfs(api_url, record, repo)
    flavour, binary = _binary()
    workdir = repo.parent
    env = _daemon_env(flavour, workdir, repo)
    process = spawn(
        record.name, [str(binary), "daemon"], log=workdir / "ipfs.log", workdir=workdir, env=env
    )
    if on_spawn is not None:
        on_spawn(process)
    _wait_api(process, api_url, repo, timeout, flavour)
    return process


KEEP_RUNNING = """\
// Written by gpumarket's devnet. js-ipfs's CLI exits on any unhandled promise rejection,
// and a cat ended while bitswap wants are pending (its own timeout, or a client that
// went away: a cancelled or resumed transfer) rejects those wants unhandled: the node
// that was fetching would die with the transfer. Such rejections are logged instead.
const once = process.once.bind(process)
process.once = (event, listener) => {
  if (event !== 'unhandledRejection') return once(event, listener)
  return process.on(event, (err) => console.error('unhandled rejection, kept running:', err))
}
// js-libp2p's TCP transport leaves Nagle's algorithm on. Bitswap opens a stream per
// message, and each small write then waits for the peer's delayed ACK (40 ms or more on
// Linux): a one-block fetch between two nodes took about 250 ms. Kubo, like any Go
// program, sets TCP_NODELAY on every connection; so do these daemons.
const net = require('net')
const connect = net.Socket.prototype.connect
net.Socket.prototype.connect = function (...args) {
  this.setNoDelay(true)
  return connect.apply(this, args)
}
const createServer = net.createServer
net.createServer = function (options, listener) {
  if (typeof options === 'function' || options === undefined) {
    return createServer.call(this, { noDelay: true }, options)
  }
  return createServer.call(this, { ...options, noDelay: true }, listener)
}
"""


def _daemon_env(flavour: str, workdir: Path, repo: Path) -> dict[str, str]:
    """The daemon's environment; a js-ipfs node preloads :data:`KEEP_RUNNING`."""
    env = dict(os.environ, IPFS_PATH=str(repo))
    if flavour == "js-ipfs":
        guard = workdir / "keep-running.cjs"
        guard.write_text(KEEP_RUNNING)
        env["NODE_OPTIONS"] = f"{env.get('NODE_OPTIONS', '')} --require {guard}".strip()
    return env


def _binary() -> tuple[str, Path]:
    kubo = kubo_binary()
    if kubo is not None:
        return "kubo", kubo
    return "js-ipfs", npm_tool("jsipfs")


ISOLATED_PORTS = (5001, 4001, 8080)
"""API, swarm and gateway ports of a node on an isolated devnet host (its own namespace)."""


def _overlay(
    api_port: int, swarm_port: int, gateway_port: int, address: str = "127.0.0.1"
) -> dict[str, Any]:
    """The settings that keep a node on ``address`` (loopback) and to itself."""
    return {
        "Addresses": {
            "API": f"/ip4/{address}/tcp/{api_port}",
            "Gateway": f"/ip4/{address}/tcp/{gateway_port}",
            "Swarm": [f"/ip4/{address}/tcp/{swarm_port}"],
            "Announce": [],
            "NoAnnounce": [],
        },
        "Bootstrap": [],
        "Routing": {"Type": "none"},
        "Discovery": {"MDNS": {"Enabled": False}, "webRTCStar": {"Enabled": False}},
    }


def _configure(repo: Path, overlay: dict[str, Any]) -> None:
    path = repo / "config"
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DevnetError(f"ipfs init left no readable config at {path}: {exc}") from exc
    addresses = config.setdefault("Addresses", {})
    addresses.update(overlay["Addresses"])
    if "RPC" in addresses:
        addresses["RPC"] = f"/ip4/127.0.0.1/tcp/{free_port()}"
    config["Bootstrap"] = []
    config.setdefault("Routing", {})["Type"] = "none"
    discovery = config.setdefault("Discovery", {})
    discovery.setdefault("MDNS", {})["Enabled"] = False
    if "webRTCStar" in discovery:
        discovery["webRTCStar"]["Enabled"] = False
    path.write_text(json.dumps(config, indent=2))


def _init(binary: Path, flavour: str, workdir: Path, env: dict[str, str]) -> None:
    try:
        init = subprocess.run(
            [str(binary), "init", "--profile", "test"],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=INIT_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise DevnetError(f"{flavour} init did not finish within {INIT_TIMEOUT:.0f}s") from exc
    if init.returncode != 0:
        raise DevnetError(f"{flavour} init failed: {(init.stderr or init.stdout).strip()[-800:]}")


def _api_answers(api_url: str) -> bool:
    try:
        return httpx.post(f"{api_url}/api/v0/id", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_ipfs(
    workdir: Path,
    *,
    api_port: int = 0,
    timeout: float = 60.0,
    name: str = "ipfs",
    on_spawn: Callable[[ProcessRecord], None] | None = None,
    host: Host | None = None,
) -> IpfsNode:
    """Initialise a fresh repo under ``workdir`` and start the daemon on loopback (with
    ``host``, in that host's namespace on its address); ``on_spawn`` is told the process
    as soon as it exists (before it is ready)."""
    flavour, binary = _binary()
    workdir.mkdir(parents=True, exist_ok=True)
    repo = workdir / "repo"
    env = _daemon_env(flavour, workdir, repo)
    log = workdir / "ipfs.log"
    address = host.address if host is not None else "127.0.0.1"
    if host is not None:
        api_port, swarm_port, gateway_port = ISOLATED_PORTS
        rpc_port = ISOLATED_PORTS[0] + 1
    else:
        if api_port:
            require_free_port(api_port, "ipfs API")
        api_port = api_port or free_port()
        swarm_port, gateway_port, rpc_port = free_port(), free_port(), free_port()
    overlay = _overlay(api_port, swarm_port, gateway_port, address)
    command = [str(binary), "daemon"]
    if (repo / "config").exists():
        _configure(repo, overlay)
    elif flavour == "js-ipfs":
        # One node.js start instead of two: the daemon initialises the repo itself,
        # with the overlay merged into its default config.
        overlay["Addresses"]["RPC"] = f"/ip4/{address}/tcp/{rpc_port}"
        init_config = workdir / "init-config.json"
        init_config.write_text(json.dumps(overlay))
        command += ["--init-profile", "test", "--init-config", str(init_config)]
    else:
        _init(binary, flavour, workdir, env)
        _configure(repo, overlay)
    record = spawn(f"{name} ({flavour})", command, log=log, workdir=workdir, env=env, host=host)
    if on_spawn is not None:
        on_spawn(record)
    api_url = f"http://{address}:{api_port}"
    _wait_api(record, api_url, repo, timeout, flavour)
    peer_id = _peer_id(api_url)
    return IpfsNode(
        api_url=api_url,
        repo=repo,
        flavour=flavour,
        process=record,
        gateway_url=f"http://{address}:{gateway_port}",
        swarm_addr=f"/ip4/{address}/tcp/{swarm_port}/p2p/{peer_id}",
        timeout=timeout,
    )


def start_nodes(
    root: Path,
    names: list[str],
    *,
    api_port: int = 0,
    timeout: float = 60.0,
    on_spawn: Callable[[ProcessRecord], None] | None = None,
    hosts: Mapping[str, Host] | None = None,
) -> dict[str, IpfsNode]:
    """One node per name (under ``root/ipfs-<name>``), started side by side, then every
    pair connected as swarm peers. The first name gets ``api_port`` if given; ``on_spawn``
    is called (under a lock, from the starting threads) with each process as it starts. If
    one fails, those already started are stopped before the error propagates."""
    nodes: dict[str, IpfsNode] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def spawned(record: ProcessRecord) -> None:
        if on_spawn is not None:
            with lock:
                on_spawn(record)

    def one(index: int, name: str) -> None:
        try:
            node = start_ipfs(
                root / f"ipfs-{name}",
                api_port=api_port if index == 0 else 0,
                timeout=timeout,
                name=f"ipfs-{name}",
                on_spawn=spawned,
                host=(hosts or {}).get(name),
            )
        except BaseException as exc:  # handed to the caller below
            with lock:
                errors.append(exc)
            return
        with lock:
            nodes[name] = node

    threads = [threading.Thread(target=one, args=(i, n)) for i, n in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if errors:
            raise errors[0]
        ordered = [nodes[name] for name in names]
        for i, node in enumerate(ordered):
            connect_nodes(node.api_url, [other.swarm_addr for other in ordered[i + 1 :]])
    except BaseException:
        for node in nodes.values():
            with contextlib.suppress(DevnetError):
                node.stop()
        raise
    return {name: nodes[name] for name in names}


def _wait_api(
    record: ProcessRecord, api_url: str, repo: Path, timeout: float, flavour: str
) -> None:
    try:
        wait_ready(record, lambda: _api_answers(api_url), timeout=timeout, what=f"{flavour} daemon")
    finally:
        if not _api_answers(api_url):
            _clean_lock(repo)


def _peer_id(api_url: str) -> str:
    try:
        resp = httpx.post(f"{api_url}/api/v0/id", timeout=5.0)
        resp.raise_for_status()
        return str(resp.json()["ID"])
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise DevnetError(f"IPFS API {api_url} did not tell its peer id: {exc}") from exc


def connect_nodes(api_url: str, peers: list[str]) -> None:
    """Have the node at ``api_url`` dial each swarm multiaddr in ``peers``."""
    for addr in peers:
        try:
            resp = httpx.post(f"{api_url}/api/v0/swarm/connect", params={"arg": addr}, timeout=10.0)
        except httpx.HTTPError as exc:
            raise DevnetError(f"IPFS node {api_url} could not dial {addr}: {exc}") from exc
        if resp.status_code != 200:
            raise DevnetError(f"IPFS node {api_url} could not dial {addr}: {resp.text[:300]}")


def _clean_lock(repo: Path) -> None:
    lock = repo / "repo.lock"
    if lock.is_dir():
        shutil.rmtree(lock, ignore_errors=True)
    else:
        lock.unlink(missing_ok=True)


def stop_ipfs(api_url: str | None, record: ProcessRecord, repo: Path | None) -> None:
    """Ask the daemon to shut down, then make sure its process group is gone."""
    if api_url:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{api_url}/api/v0/shutdown", timeout=3.0)
    stop(record, grace=10.0)
    if repo is not None:
        _clean_lock(repo)


def check_ipfs(api_url: str) -> str:
    """The daemon's agent version; DevnetError if the API does not answer."""
    try:
        resp = httpx.post(f"{api_url}/api/v0/version", timeout=2.0)
        resp.raise_for_status()
        return str(resp.json().get("Version", "?"))
    except (httpx.HTTPError, ValueError) as exc:
        raise DevnetError(f"IPFS API {api_url} did not answer: {exc}") from exc


__all__ = [
    "IpfsNode",
    "check_ipfs",
    "connect_nodes",
    "log_tail",
    "start_ipfs",
    "start_nodes",
    "stop_ipfs",
]
