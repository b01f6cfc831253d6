"""Whether each provider can be dialled at the addresses it advertises.

A provider dials the coordinator itself (adverts travel over that connection), so a wrong
announced address stays hidden until the connection drops and a job offer needs a fresh
dial, which then fails with a job waiting. Every provider in the book is probed instead
(a TCP connect to each advertised address, :func:`protocol.p2p.addresses.probe`) when it
joins, whenever its advertised addresses change, and every ``recheck_s``. A provider none
of whose addresses answers is logged once per change and marked in its book entry
(``unreachable``, shown by ``GET /providers`` and ``gpumarket market providers``) with
the peer, every address tried, and what the provider must configure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import trio

from coordinator.matching.book import BookEntry, ProviderBook
from protocol.p2p.addresses import probe

log = logging.getLogger(__name__)

RECHECK_S = 300.0
"""A provider's addresses are probed again this long after the last probe."""
CONCURRENT_PROBES = 16

Probe = Callable[[str], Awaitable[str | None]]


def unreachable_detail(peer_id: str, failures: dict[str, str]) -> str:
    """What is wrong and what to configure, for the log and the market view."""
    tried = "; ".join(f"{addr}: {why}" for addr, why in failures.items())
    return (
        f"provider {peer_id} advertises no address this coordinator can reach ({tried}); "
        "it must announce the address others reach it at (PROVIDER_ANNOUNCE / "
        "`provider run --announce`), forward that port to its listen port and open it in "
        "its firewall"
    )


class Reachability:
    """Probes providers' advertised addresses; see the module docstring."""

    def __init__(
        self,
        book: ProviderBook,
        *,
        recheck_s: float = RECHECK_S,
        probe: Probe = probe,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.book = book
        self.recheck_s = recheck_s
        self.probe = probe
        self.clock = clock
        self._probed: dict[str, tuple[tuple[str, ...], float]] = {}
        """Provider address -> the multiaddrs last probed and when."""

    def due(self) -> list[BookEntry]:
        now = self.clock()
        for gone in self._probed.keys() - self.book.entries.keys():
            del self._probed[gone]
        out = []
        for address, entry in self.book.entries.items():
            last = self._probed.get(address)
            addrs = tuple(entry.advert.multiaddrs)
            if last is None or last[0] != addrs or now - last[1] >= self.recheck_s:
                out.append(entry)
        return out

    async def check_once(self) -> None:
        """Probe every provider that is due one."""
        limiter = trio.CapacityLimiter(CONCURRENT_PROBES)
        async with trio.open_nursery() as nursery:
            for entry in self.due():
                nursery.start_soon(self._check, entry, limiter)

    async def _check(self, entry: BookEntry, limiter: trio.CapacityLimiter) -> None:
        advert = entry.advert
        addrs = tuple(advert.multiaddrs)
        failures: dict[str, str] = {} if addrs else {"(none advertised)": "nothing to dial"}
        async with limiter:
            for addr in addrs:
                why = await self.probe(addr.split("/p2p/")[0])
                if why is None:  # one answering address is enough
                    failures = {}
                    break
                failures[addr] = why
        self._probed[advert.provider] = (addrs, self.clock())
        detail = unreachable_detail(advert.peer_id, failures) if failures else None
        if detail != entry.unreachable:
            if detail is None:
                log.info("provider %s is reachable again at %s", advert.provider, addrs)
            else:
                log.warning("%s", detail)
        entry.unreachable = detail
