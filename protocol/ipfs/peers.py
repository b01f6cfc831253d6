"""Other participants' IPFS nodes, as settings name them.

``peers``: swarm multiaddrs ending in ``/p2p/<peer id>`` that a participant's own daemon
dials (``swarm/connect``) so bitswap can reach the content they hold. ``gateways``: those
nodes' read-only HTTP gateways, from which files are streamed directly (and verified).
Settings give either as a comma-separated string or a list.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from multiaddr import Multiaddr

MAX_PEERS = 64
MAX_GATEWAYS = 16


def _entries(value: object, what: str, limit: int) -> list[str] | None:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        return None
    if len(value) > limit:
        raise ValueError(f"at most {limit} {what}, got {len(value)}")
    return [str(part).strip() for part in value]


def parse_peers(value: object) -> object:
    """A tuple of checked peer multiaddrs; ``ValueError`` names a bad entry."""
    entries = _entries(value, "IPFS peers", MAX_PEERS)
    if entries is None:
        return value
    for entry in entries:
        try:
            addr = Multiaddr(entry)
            addr.value_for_protocol("p2p")
        except Exception as exc:  # multiaddr raises several unrelated types
            raise ValueError(
                f"IPFS peer {entry!r} is not a multiaddr ending in /p2p/<peer id> "
                f"(e.g. /ip4/203.0.113.7/tcp/4001/p2p/12D3Koo...): {exc}"
            ) from exc
    return tuple(entries)


def parse_gateways(value: object) -> object:
    """A tuple of http(s) gateway base URLs; ``ValueError`` names a bad entry."""
    entries = _entries(value, "IPFS gateways", MAX_GATEWAYS)
    if entries is None:
        return value
    for entry in entries:
        parts = urlsplit(entry)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"IPFS gateway {entry!r} is not an http(s) URL (e.g. http://203.0.113.7:8080)"
            )
        if parts.path.strip("/") or parts.query:
            raise ValueError(f"IPFS gateway {entry!r}: give the base URL, without a path")
    return tuple(e.rstrip("/") for e in entries)
