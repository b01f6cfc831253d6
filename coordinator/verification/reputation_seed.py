"""Trusted settlements per provider, read from the chain: where a provider's reputation starts.

A job counts only when its coordinator (``JobCreated.coordinator``) is trusted: this
coordinator or one named in ``COORDINATOR_TRUSTED_COORDINATORS``. Its seats come from
``ProviderAssigned``; ``JobSettled.winners`` makes each winner one success when at least
two seats won (a lone winner was not re-run by anyone: paid, not verified), and each
``ProviderSlashed`` one slash. The registry's lifetime counters are never read: any
coordinator can farm them by settling jobs with itself.

:meth:`TrustedHistory.replay` reads the blocks the chain watcher has already passed, in
ranges of at most ``MAX_RANGE`` blocks; afterwards :meth:`TrustedHistory.observe` follows
the watcher's reads. This coordinator's own jobs are counted here only while it rebuilds
from an empty store (``count_own``): otherwise their seats are counted from the store's
own rows (:mod:`coordinator.verification.reputation`), and counting them here too would count twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from contracts.models import ChainEvent
from coordinator.chain.chain_io import AsyncChain
from coordinator.chain.watcher import MAX_RANGE
from protocol.ids import parse_address

ENDED = frozenset({"JobReclaimed", "JobCancelled", "JobAborted"})


@dataclass
class _Job:
    coordinator: str
    seats: dict[int, str] = field(default_factory=dict)


class TrustedHistory:
    """Successes and slashes per provider in jobs of trusted coordinators."""

    def __init__(self, own: str, trusted: Iterable[str] = (), *, count_own: bool = False) -> None:
        self.own = parse_address(own)
        self.trusted = frozenset({self.own} | {parse_address(a) for a in trusted})
        self.count_own = count_own
        self._open: dict[bytes, _Job] = {}
        """Trusted jobs not settled yet (dropped once they end: memory stays bounded)."""
        self._successes: dict[str, int] = {}
        self._slashes: dict[str, int] = {}

    def counts(self, address: str) -> tuple[int, int]:
        who = parse_address(address)
        return self._successes.get(who, 0), self._slashes.get(who, 0)

    def stop_counting_own(self) -> None:
        """The store has caught up with the chain: own jobs are counted from its rows now."""
        self.count_own = False
        self._open = {k: j for k, j in self._open.items() if j.coordinator != self.own}

    def observe(self, event: ChainEvent) -> None:
        if event.contract != "market" or "jobId" not in event.args:
            return
        key = bytes(event.args["jobId"])
        if event.name == "JobCreated":
            coordinator = parse_address(event.args["coordinator"])
            if coordinator in self.trusted and (coordinator != self.own or self.count_own):
                self._open[key] = _Job(coordinator)
            return
        job = self._open.get(key)
        if job is None:
            return
        if event.name == "ProviderAssigned":
            job.seats[int(event.args["seat"])] = parse_address(event.args["provider"])
        elif event.name == "ProviderSlashed":
            who = parse_address(event.args["provider"])
            self._slashes[who] = self._slashes.get(who, 0) + 1
        elif event.name == "JobSettled":
            winners = int(event.args["winners"])
            # A lone winner's result was re-run by nobody: paid, but not verified.
            if winners.bit_count() >= 2:
                for idx, winner in job.seats.items():
                    if winners >> idx & 1:
                        self._successes[winner] = self._successes.get(winner, 0) + 1
            del self._open[key]
        elif event.name in ENDED:
            del self._open[key]

    async def replay(self, chain: AsyncChain, start: int, end: int) -> int:
        """Observe every event of blocks ``start..end``, ``MAX_RANGE`` blocks a read;
        returns how many events were read."""
        read = 0
        while start <= end:
            stop = min(end, start + MAX_RANGE - 1)
            events = await chain.get_events(start, stop)
            for event in events:
                self.observe(event)
            read += len(events)
            start = stop + 1
        return read
