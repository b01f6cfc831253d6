"""Who may advertise to this coordinator: providers registered with at least the minimum stake.

The advert validator runs inside GossipSub, before any signature is checked, so
:meth:`Admission.admits` is a set lookup and never does I/O. The set is kept from the
chain: every provider event the chain watcher reads (``ProviderRegistered``, ``Staked``,
``UnbondRequested``, ``Withdrawn``, ``ProviderSlashed``) marks that provider for a fresh
``provider_info`` read, so a provider that stakes joins within a poll or two and one slashed
or unbonded below the minimum leaves. An address the set does not know (say, after a
restart) is queued for one lookup, at most once per ``lookup_interval_s``, in a bounded
queue served by :meth:`Admission.run` at a bounded rate: strangers cost a coordinator at
most that many chain reads and a fixed amount of memory, never a book entry.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

import trio

from contracts.models import ChainEvent
from coordinator.chain.chain_io import AsyncChain
from coordinator.tasks import contained
from protocol.errors import MessageError
from protocol.ids import Address, parse_address

log = logging.getLogger(__name__)

PROVIDER_EVENTS = frozenset(
    {"ProviderRegistered", "Staked", "UnbondRequested", "Withdrawn", "ProviderSlashed"}
)


class Admission:
    """The chain-backed set of providers whose adverts are worth any work."""

    def __init__(
        self,
        chain: AsyncChain,
        min_stake: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        lookup_interval_s: float = 10.0,
        max_queued: int = 1024,
        lookups_per_s: float = 20.0,
    ) -> None:
        self.chain = chain
        self.min_stake = max(int(min_stake), 1)  # registered without stake is a stranger
        self.clock = clock
        self.lookup_interval_s = lookup_interval_s
        self.max_queued = max_queued
        self.lookups_per_s = lookups_per_s
        self.admitted: set[Address] = set()
        self.dropped = 0
        """Lookups of unknown addresses not queued (queue or rate table full)."""
        self._changed: dict[Address, None] = {}  # from chain events: always read
        self._queued: OrderedDict[Address, None] = OrderedDict()  # strangers: bounded
        self._asked: OrderedDict[Address, float] = OrderedDict()  # address -> last queued
        self._wake = trio.Event()

    def __len__(self) -> int:
        return len(self.admitted)

    # ------------------------------------------------------------ validator path
    def admits(self, address: Address) -> bool:
        """Whether ``address`` is a registered, staked provider (O(1), no I/O); an unknown
        address is queued for one chain lookup, so a new provider is admitted soon."""
        if address in self.admitted:
            return True
        self._ask(address)
        return False

    def _ask(self, address: Address) -> None:
        now = self.clock()
        last = self._asked.get(address)
        if last is not None and now - last < self.lookup_interval_s:
            return
        while self._asked:  # forget lookups older than the interval (oldest first)
            oldest, at = next(iter(self._asked.items()))
            if now - at < self.lookup_interval_s:
                break
            del self._asked[oldest]
        if len(self._queued) >= self.max_queued or len(self._asked) >= 4 * self.max_queued:
            self.dropped += 1
            return
        self._asked.pop(address, None)
        self._asked[address] = now
        self._queued[address] = None
        self._wake.set()

    # ------------------------------------------------------------ chain side
    def observe(self, event: ChainEvent) -> None:
        """Chain watcher hook: a provider event marks that provider for a fresh read."""
        if event.name not in PROVIDER_EVENTS or "provider" not in event.args:
            return
        try:
            address = parse_address(str(event.args["provider"]))
        except MessageError:
            return
        self._changed[address] = None
        self._wake.set()

    def set_stake(self, address: Address, registered: bool, stake: int) -> None:
        if registered and stake >= self.min_stake:
            if address not in self.admitted:
                log.info("provider %s admitted (stake %d)", address, stake)
            self.admitted.add(address)
        elif address in self.admitted:
            log.info("provider %s no longer admitted (stake %d)", address, stake)
            self.admitted.discard(address)

    async def lookup(self, address: Address) -> None:
        info = await self.chain.provider_info(address)
        self.set_stake(address, info.registered, int(info.stake))

    def _next(self) -> tuple[Address, bool] | None:
        """The next address to read: chain-event changes first, then queued strangers."""
        if self._changed:
            address = next(iter(self._changed))
            del self._changed[address]
            return address, True
        if self._queued:
            address, _ = self._queued.popitem(last=False)
            return address, False
        return None

    async def refresh(self) -> int:
        """Read every pending address now (tests; :meth:`run` paces the strangers)."""
        done = 0
        while (item := self._next()) is not None:
            with contained(log, f"cannot look up provider {item[0]}"):
                await self.lookup(item[0])
            done += 1
        return done

    async def run(self) -> None:
        """Serve the lookups: changes as they come, strangers at most ``lookups_per_s``."""
        while True:
            item = self._next()
            if item is None:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            address, changed = item
            with contained(log, f"cannot look up provider {address}"):
                await self.lookup(address)
            if not changed:
                await trio.sleep(1.0 / self.lookups_per_s)


__all__ = ["PROVIDER_EVENTS", "Admission"]
