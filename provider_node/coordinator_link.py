"""Keeping the provider connected to its coordinator, across coordinator restarts.

Adverts travel over GossipSub, so a provider whose only neighbour is the coordinator
reaches nobody once that connection drops. :class:`CoordinatorLink` dials the coordinator
at start (a bounded number of tries, so a wrong address fails the start), then watches the
connection and redials whenever it is gone, with a backoff capped at ``max_delay_s``::

    link = CoordinatorLink(node, settings.coordinator_multiaddr)
    await link.connect()              # raises DialError after the last try
    nursery.start_soon(link.run)      # until cancelled; never raises a dial failure
"""

from __future__ import annotations

import logging

import multiaddr
import trio
from libp2p.peer.peerinfo import info_from_p2p_addr

from protocol.errors import ConfigError, GpuMarketError
from protocol.ids import PeerId
from protocol.p2p.errors import DialError
from protocol.p2p.host import Node

log = logging.getLogger(__name__)

START_ATTEMPTS = 10
"""Tries of the first dial before the daemon's start fails."""


def coordinator_peer(addr: str) -> PeerId:
    """The peer id at the end of the coordinator's ``.../p2p/<peer id>`` multiaddr."""
    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as exc:
        raise ConfigError(
            f"PROVIDER_COORDINATOR_MULTIADDR {addr!r} is not a multiaddr ending in /p2p/: {exc}"
        ) from exc
    return PeerId(info.peer_id.to_base58())


class Backoff:
    """Delays that double from ``first_s`` up to ``max_s``; ``reset`` starts over."""

    def __init__(self, first_s: float, max_s: float) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError("need 0 < first_s <= max_s")
        self.first_s = first_s
        self.max_s = max_s
        self._next = first_s

    def next(self) -> float:
        delay = self._next
        self._next = min(self.max_s, delay * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first_s


class CoordinatorLink:
    """Holds a connection from ``node`` to the coordinator at ``addr``; see the module doc."""

    def __init__(
        self,
        node: Node,
        addr: str,
        *,
        check_interval_s: float = 0.5,
        first_delay_s: float = 0.2,
        max_delay_s: float = 5.0,
        stable_after_s: float = 10.0,
    ) -> None:
        self.node = node
        self.addr = addr
        self.peer = coordinator_peer(addr)
        self.check_interval_s = check_interval_s
        self.stable_after_s = stable_after_s
        self.backoff = Backoff(first_delay_s, max_delay_s)
        self.reconnects = 0
        """Connections re-established after one was lost."""

    @property
    def connected(self) -> bool:
        return self.node.is_connected(self.peer)

    async def connect(self, attempts: int = START_ATTEMPTS) -> None:
        """Dial until connected; after ``attempts`` failed tries the last error is raised."""
        self.backoff.reset()
        for attempt in range(1, attempts + 1):
            try:
                await self.node.connect(self.addr)
                log.info("connected to the coordinator %s", self.peer)
                return
            except GpuMarketError as exc:
                log.warning("dialing the coordinator (try %d of %d): %s", attempt, attempts, exc)
                if attempt == attempts:
                    raise DialError(
                        self.peer,
                        f"the coordinator does not answer at {self.addr} after {attempts} "
                        f"tries (last: {exc}); set PROVIDER_COORDINATOR_MULTIADDR to the "
                        "address the coordinator announces (its ready file and start-up log "
                        "give it); a coordinator behind a NAT must announce its public "
                        "address (COORDINATOR_ANNOUNCE / `coordinator run --announce`), "
                        "forward that port and open it in its firewall",
                    ) from exc
            await trio.sleep(self.backoff.next())

    async def run(self) -> None:
        """Watch the connection and redial while it is down, until cancelled."""
        while True:
            await self._wait_until_lost()
            log.warning("lost the connection to the coordinator %s; redialing", self.peer)
            await self._redial()

    async def _wait_until_lost(self) -> None:
        up_since = trio.current_time()
        while self.connected:
            # Only a connection that stays up earns quick redials again: one that drops
            # right after each dial keeps the backoff growing towards max_delay_s.
            if trio.current_time() - up_since >= self.stable_after_s:
                self.backoff.reset()
            await trio.sleep(self.check_interval_s)

    async def _redial(self) -> None:
        attempt = 0
        while True:
            await trio.sleep(self.backoff.next())
            attempt += 1
            try:
                await self.node.connect(self.addr)
                break
            except GpuMarketError as exc:
                log.info("redialing the coordinator (try %d) failed: %s", attempt, exc)
            except Exception:
                # A libp2p failure that escaped translation must not end the daemon.
                log.exception("redialing the coordinator (try %d) failed unexpectedly", attempt)
        self.reconnects += 1
        log.info("reconnected to the coordinator %s after %d tries", self.peer, attempt)
