"""Where a libp2p host listens and what it tells others to dial.

``listen``: one TCP multiaddr to bind (``/ip4/0.0.0.0/tcp/4001`` for every interface).
``announce``: the multiaddrs others should dial instead of the listen addresses, e.g. the
public address a NAT forwards to this host; they are what adverts carry. An announced
address must be dialable: never an unspecified address (``0.0.0.0``, ``::``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from multiaddr import Multiaddr

MAX_ANNOUNCE = 8
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
