"""A private virtual network of Linux network namespaces: one host per market participant.

``devnet up --isolated`` (and the tests that prove no component relies on sharing
localhost or a daemon with another) puts Anvil, the coordinator, each provider and the
requester on hosts of their own. Each host is a network namespace with its own loopback
and one virtual Ethernet link to a bridge; the bridge lives in a namespace of its own
(the hub), so nothing on the machine's own interfaces or routes changes. The machine's
namespace joins the bridge too, with the last address of the subnet, so a person (or a
test) at the machine reaches every host by its address; hosts never reach beyond it.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), ``ip`` from iproute2 and ``nsenter`` from
util-linux. Everything created
here is named ``gm<tag>...`` and removed by :meth:`Network.close`, which is idempotent and
also works from a record of the names (:func:`remove`), so a crashed run can be cleaned up.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from protocol.errors import DevnetError

IP_TIMEOUT_S = 10.0
MAX_HOSTS = 200
"""Hosts in one network: addresses .1 to .200 of its /24 (.254 is the machine's)."""
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,15}$")


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (None when they can)."""
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed: install the iproute2 package"
    if shutil.which("nsenter") is None:
        return "`nsenter` (util-linux) is not installed: install the util-linux package"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN): run as root, or drop --isolated"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DevnetError(f"ip {' '.join(args)}: {exc}") from exc
    if check and done.returncode != 0:
        raise DevnetError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _used_subnets() -> list[ipaddress.IPv4Network]:
    out = _ip("-o", "-4", "addr", "show").stdout
    return [
        ipaddress.IPv4Interface(m.group(1)).network
        for m in re.finditer(r"inet (\d+\.\d+\.\d+\.\d+/\d+)", out)
    ]


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 under 10.213.0.0/16 that no interface of this machine is on."""
    used = _used_subnets()
    for third in range(256):
        candidate = ipaddress.IPv4Network(f"10.213.{third}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise DevnetError("no free /24 under 10.213.0.0/16 for an isolated devnet")


@dataclass(frozen=True)
class Host:
    """One participant's network namespace: its name there and its address."""

    name: str
    namespace: str
    address: str

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run inside this host's network namespace, and only that: unlike
        ``ip netns exec``, ``nsenter`` leaves the mounts alone, so ``/sys/fs/cgroup`` (the
        sandbox's limits) stays as it is on the machine."""
        return ["nsenter", f"--net=/run/netns/{self.namespace}", "--", *command]


@dataclass
class Network:
    """A bridge and its hosts; see the module docstring. Use as a context manager."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: ipaddress.IPv4Network | None = None
    hosts: dict[str, Host] = field(default_factory=dict)
    _open: bool = False

    @property
    def hub(self) -> str:
        return f"gm{self.tag}-hub"

    @property
    def machine_link(self) -> str:
        """The machine's end of its link to the bridge."""
        return f"gm{self.tag}m"

    @property
    def machine_address(self) -> str:
        """Where the machine itself sits on the network (reachable from every host)."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 254)

    def create(self) -> Network:
        """Make the hub, its bridge and the machine's link to it."""
        reason = unavailable_reason()
        if reason is not None:
            raise DevnetError(f"isolated devnet: {reason}")
        if self.subnet is None:
            self.subnet = free_subnet()
        self._open = True
        try:
            _ip("netns", "add", self.hub)
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "link", "set", "br0", "up")
            outside, inside = self.machine_link, f"{self.machine_link}p"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", self.hub)
            _ip("-n", self.hub, "link", "set", inside, "master", "br0", "up")
            prefix = self.subnet.prefixlen
            _ip("addr", "add", f"{self.machine_address}/{prefix}", "dev", outside)
            _ip("link", "set", outside, "up")
        except DevnetError:
            self.close()
            raise
        return self

    def add(self, name: str) -> Host:
        """A new host ``name`` (lower-case letters, digits, dashes) with the next address."""
        if not self._open or self.subnet is None:
            raise DevnetError("create() the network before adding hosts")
        if not _NAME.match(name):
            raise DevnetError(f"host name {name!r}: use lower-case letters, digits and dashes")
        if name in self.hosts:
            return self.hosts[name]
        if len(self.hosts) >= MAX_HOSTS:
            raise DevnetError(f"an isolated devnet holds at most {MAX_HOSTS} hosts")
        index = len(self.hosts) + 1
        host = Host(name, f"gm{self.tag}-{name}", str(self.subnet.network_address + index))
        outside = f"gm{self.tag}h{index}"
        _ip("netns", "add", host.namespace)
        self.hosts[name] = host
        _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", host.namespace)
        _ip("link", "set", outside, "netns", self.hub)
        _ip("-n", self.hub, "link", "set", outside, "master", "br0", "up")
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        _ip(
            "-n",
            host.namespace,
            "addr",
            "add",
            f"{host.address}/{self.subnet.prefixlen}",
            "dev",
            "eth0",
        )
        _ip("-n", host.namespace, "link", "set", "eth0", "up")
        return host

    def namespaces(self) -> list[str]:
        """Every namespace of this network, hosts first (what :func:`remove` takes)."""
        return [h.namespace for h in self.hosts.values()] + [self.hub]

    def close(self) -> None:
        """Stop whatever still runs in the hosts and remove every namespace and link."""
        if not self._open:
            return
        self._open = False
        remove(self.namespaces(), machine_link=self.machine_link)

    def __enter__(self) -> Network:
        return self.create()

    def __exit__(self, *_: object) -> None:
        self.close()


def remove(namespaces: Sequence[str], *, machine_link: str | None = None) -> None:
    """Kill the processes left in ``namespaces`` and delete them (their links go with them)."""
    for namespace in namespaces:
        pids = _ip("netns", "pids", namespace, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        _ip("netns", "del", namespace, check=False)
    if machine_link is not None:
        _ip("link", "del", machine_link, check=False)
