"""Where a libp2p host listens and what it tells others to dial.

``listen``: one TCP multiaddr to bind (``/ip4/0.0.0.0/tcp/4001`` for every interface).
``announce``: the multiaddrs others should dial instead of the listen addresses, e.g. the
public address a NAT forwards to this host; they are what adverts carry. An announced
address must be dialable: never an unspecified address (``0.0.0.0``, ``::``).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence

import trio
from multiaddr import Multiaddr

MAX_ANNOUNCE = 8
PROBE_TIMEOUT_S = 3.0
"""Longest a reachability probe waits for one address to accept a TCP connection."""
HOST_PROTOCOLS = ("ip4", "ip6", "dns", "dns4", "dns6")


def _parse(entry: str, what: str) -> Multiaddr:
    try:
        addr = Multiaddr(entry)
        names = [p.name for p in addr.protocols()]
    except Exception as exc:  # multiaddr raises several unrelated types
        raise ValueError(f"{what} {entry!r} is not a multiaddr: {exc}") from exc
    if len(names) < 2 or names[0] not in HOST_PROTOCOLS or names[1] != "tcp":
        raise ValueError(
            f"{what} {entry!r} must be a host and a TCP port, e.g. /ip4/203.0.113.7/tcp/4001 "
            "or /dns4/provider.example.org/tcp/4001"
        )
    return addr


def check_listen(value: str) -> str:
    """A listen multiaddr: ip4/ip6 and TCP (0 picks a free port)."""
    addr = _parse(value, "listen address")
    if addr.protocols()[0].name not in ("ip4", "ip6"):
        raise ValueError(f"listen address {value!r} must name an IP, not a DNS name")
    return value


def parse_announce(value: object) -> object:
    """A settings value naming announce multiaddrs (comma-separated or a list) becomes a
    tuple; ``ValueError`` names a bad entry."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        return value
    if len(value) > MAX_ANNOUNCE:
        raise ValueError(f"at most {MAX_ANNOUNCE} announce addresses, got {len(value)}")
    out = []
    for entry in map(str, value):
        addr = _parse(entry, "announce address")
        if "p2p" in [p.name for p in addr.protocols()]:
            raise ValueError(f"announce address {entry!r}: leave out /p2p/ (it is added)")
        first = addr.protocols()[0].name
        if first in ("ip4", "ip6") and ipaddress.ip_address(addr.value_for_protocol(first)) in (
            ipaddress.ip_address("0.0.0.0"),
            ipaddress.ip_address("::"),
        ):
            raise ValueError(
                f"announce address {entry!r} is unspecified: nobody can dial it; give the "
                "address others reach this host at (the public or port-forwarded one)"
            )
        if addr.value_for_protocol("tcp") == "0":
            raise ValueError(f"announce address {entry!r} needs the real port, not 0")
        out.append(entry)
    return tuple(out)


def announced(addrs: Sequence[str], peer_id: str) -> list[str]:
    """Announce addresses as others dial them: each ending in ``/p2p/<peer id>``."""
    return [f"{addr}/p2p/{peer_id}" for addr in addrs]


def unspecified(addr: str) -> bool:
    """Whether a listen address binds every interface (and so cannot be dialled as is)."""
    return addr.startswith(("/ip4/0.0.0.0/", "/ip6/::/"))


def host_port(addr: str) -> tuple[str, int]:
    """The host (IP or DNS name) and TCP port a multiaddr names; ValueError if none."""
    parsed = _parse(addr, "address")
    first = parsed.protocols()[0].name
    return parsed.value_for_protocol(first), int(parsed.value_for_protocol("tcp"))


async def probe(addr: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Whether something accepts a TCP connection at ``addr``: None if so, else why not.
    Only the transport is tried (no libp2p handshake): enough to tell a closed port, a
    missing port forward or a firewall from a listening host."""
    try:
        host, port = host_port(addr)
    except ValueError as exc:
        return str(exc)
    with trio.move_on_after(timeout_s):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            # trio wraps each attempt's error in a group: the first one says it best.
            group = exc.__cause__
            if isinstance(group, BaseExceptionGroup):
                first = group.exceptions[0]
                if isinstance(first, OSError) and first.errno:
                    return os.strerror(first.errno).lower()
            return str(exc) or type(exc).__name__
        await stream.aclose()
        return None
    return f"no answer within {timeout_s:g}s (a firewall or a missing port forward drops it)"


def probe_sync(addr: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """:func:`probe` for code outside trio (``provider doctor``)."""
    try:
        host, port = host_port(addr)
    except ValueError as exc:
        return str(exc)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except TimeoutError:
        return f"no answer within {timeout_s:g}s (a firewall or a missing port forward drops it)"
    except OSError as exc:
        return (exc.strerror or str(exc) or type(exc).__name__).lower()
