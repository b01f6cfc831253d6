"""Networks of real libp2p nodes on loopback, for tests and benchmarks.

::

    async with start_hosts(20, connect="full") as nodes:
        ...

Keys are deterministic (``dev_private_key(i)``) so a failing run can be repeated with the
same peer ids. Topologies: ``star`` (node 0 is the hub), ``chain`` (i dials i+1), ``ring``
(a ring with chords across, 3-4 neighbours each), ``full`` (every pair), or ``none``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Literal

import trio

from protocol.p2p.config import HostConfig
from protocol.p2p.host import Node, open_host

Topology = Literal["star", "chain", "ring", "full", "none"]

_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def dev_private_key(index: int, label: str = "gpumarket-p2p-test") -> bytes:
    """A deterministic, valid secp256k1 private key for test node ``index``."""
    counter = 0
    while True:
        digest = hashlib.sha256(f"{label}/{index}/{counter}".encode()).digest()
        if 0 < int.from_bytes(digest, "big") < _SECP256K1_ORDER:
            return digest
        counter += 1


def topology_edges(n: int, connect: Topology) -> list[tuple[int, int]]:
    """Pairs ``(dialer, listener)`` that make up ``connect`` over ``n`` nodes."""
    if connect == "none":
        return []
    if connect == "star":
        return [(i, 0) for i in range(1, n)]
    if connect == "chain":
        return [(i, i + 1) for i in range(n - 1)]
    if connect == "ring":
        # A ring with chords across: every node has 3-4 neighbours and any two are
        # at most about n/4 hops apart, like a small overlay network.
        edges = {(i, (i + 1) % n) for i in range(n)} if n > 2 else {(0, 1)} if n == 2 else set()
        if n >= 6:
            edges |= {(i, (i + n // 2) % n) for i in range(n // 2)}
        return sorted((min(a, b), max(a, b)) for a, b in edges)
    if connect == "full":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    raise ValueError(f"unknown topology {connect!r}")


async def connect_nodes(
    nodes: Sequence[Node], edges: Sequence[tuple[int, int]], parallel: int = 8
) -> None:
    """Dial every edge, at most ``parallel`` dials at a time."""
    limiter = trio.CapacityLimiter(parallel)

    async def dial(a: int, b: int) -> None:
        async with limiter:
            await nodes[a].connect(nodes[b].addrs[0])

    async with trio.open_nursery() as nursery:
        for a, b in edges:
            nursery.start_soon(dial, a, b)


@asynccontextmanager
async def start_hosts(
    n: int,
    connect: Topology = "full",
    *,
    config: HostConfig | None = None,
    keys: Sequence[bytes] | None = None,
) -> AsyncIterator[list[Node]]:
    """Start ``n`` nodes on 127.0.0.1 (free ports) and connect them as ``connect``.

    ``keys`` overrides the deterministic keys (one per node). All nodes are stopped when
    the block ends, also on failure.
    """
    if keys is not None and len(keys) != n:
        raise ValueError(f"need {n} keys, got {len(keys)}")
    private_keys = list(keys) if keys is not None else [dev_private_key(i) for i in range(n)]
    async with AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(open_host(key, config=config)) for key in private_keys
        ]
        await connect_nodes(nodes, topology_edges(n, connect))
        yield nodes
