"""The provider book: live adverts from gossipsub, checked and cross-checked with the chain.

An advert enters only after :class:`protocol.signing.Verifier` accepted it (expiry,
signature, peer id bound to the provider's address, rising sequence) and its gossip
sender is the provider's own peer. A provider counts for matching only once the chain
confirms it is registered with enough free stake (cached, refreshed every
``stake_refresh_s``); silence past ``ttl_s`` removes it. Verified challenge results replace
the self-reported TFLOPS. The book holds at most ``max_providers``: a new provider beyond
that is refused (and counted in ``refused``) while those already in keep being updated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from coordinator.matching.capacity import QUEUE_DEPTH, CapacityLedger
from coordinator.matching.columns import DTYPE_INDEX, AdvertRow, ProviderColumns
from protocol.compat import BACKEND_VENDOR, Platform, lowest_capability
from protocol.errors import MessageError, SignatureError
from protocol.ids import PeerId
from protocol.messages import Advert
from protocol.registry import MAX_ADVERT_BYTES
from protocol.signing import Verifier, decode_signed

log = logging.getLogger(__name__)

INFLIGHT_GRACE_S = 3.0
"""Adverts this long after an assignment already reflect it (providers advertise every few s)."""


def fingerprint_key(advert: Advert) -> str:
    """Everything that must match for two providers' exact results to be comparable."""
    f = advert.fingerprint
    return "/".join(
        str(x or "-") for x in (f.backend, f.gpu_model, f.driver, f.cuda, f.rocm, f.torch)
    )


def platform_of(advert: Advert) -> Platform:
    """The advert's GPU facts, as ``resources.requires`` is matched against them."""
    f = advert.fingerprint
    if not advert.gpus:
        return Platform(vendor=None, models=())
    return Platform(
        vendor=BACKEND_VENDOR.get(f.backend),
        models=tuple(dict.fromkeys(g.name for g in advert.gpus)),
        compute_capability=lowest_capability([g.compute_capability for g in advert.gpus]),
        driver=f.driver,
        torch_cuda=f.cuda,
        driver_cuda=f.driver_cuda,
    )


def offer_of(advert: Advert, seen_at: float) -> AdvertRow:
    memory = min((g.memory_bytes for g in advert.gpus), default=0)
    return AdvertRow(
        address=advert.provider,
        peer_id=advert.peer_id,
        multiaddrs=tuple(advert.multiaddrs),
        gpu_count=len(advert.gpus),
        free_gpus=advert.free_gpus,
        gpu_memory_bytes=memory,
        tflops={str(k): float(v) for k, v in advert.benchmark.tflops.items()},
        rate_per_gpu_hour=int(advert.price_per_gpu_hour),
        rate_per_cpu_hour=int(advert.price_per_cpu_hour),
        runtimes=advert.runtimes,
        fingerprint=fingerprint_key(advert),
        utilization=advert.utilization,
        seen_at=seen_at,
        packages=advert.packages,
        platform=platform_of(advert),
        max_queued=advert.max_queued or 0,
        max_input_bytes=advert.max_input_bytes,
    )


@dataclass(frozen=True)
class SpeedCheck:
    """The latest benchmark challenge of one dtype of a provider's claim."""

    passed: bool
    tflops: float
    """The per-GPU figure challenged (the advert's claim then)."""
    devices: int
    """How many of its devices answered at once."""
    at: float
    """When it was judged (the book's clock, unix seconds)."""
    reason: str = ""
    """Why it failed; empty for a pass."""


@dataclass
class BookEntry:
    advert: Advert
    seen_at: float
    stake_checked_at: float = 0.0
    registered: bool = False
    free_stake: int = 0
    reputation: float = 0.0
    checks: dict[str, SpeedCheck] = field(default_factory=dict)
    """Per dtype: its latest benchmark challenge (:class:`SpeedCheck`)."""
    unreachable: str | None = None
    """Why none of its advertised addresses answered the last probe, and the fix
    (``coordinator/wire/reachability.py``); None: one answered, or not probed yet."""


class ProviderBook:
    """Live providers, their columns for the matcher, and what the API shows of them."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        ttl_s: float = 30.0,
        stake_refresh_s: float = 15.0,
        verifier: Verifier | None = None,
        max_providers: int = 10_000,
    ) -> None:
        self.clock = clock
        self.max_providers = max_providers
        self.refused = 0
        """New providers turned away because the book was full."""
        self.ttl_s = ttl_s
        self.stake_refresh_s = stake_refresh_s
        self.verifier = verifier or Verifier()
        self.columns = ProviderColumns()
        self.capacity = CapacityLedger(self.columns, clock)
        self.entries: dict[str, BookEntry] = {}
        self.departed: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def silent(self, address: str) -> bool:
        """True when this book saw the provider and then dropped it for silence.

        A provider merely not seen yet (say, since a restart) is not silent.
        """
        return address in self.departed

    def looks_free(self, address: str) -> bool:
        """Whether a provider that answered "busy" may be asked again: only once it
        advertised since refusing (or one of ours finished there) and fewer of our jobs
        run or wait there than its job slots plus the queue it announces (at most
        ``QUEUE_DEPTH``)."""
        cols = self.columns
        slot = cols.slot(address)
        if slot is None:
            return True
        if cols.full_since[slot] >= cols.seen_at[slot]:
            return False  # refused since its last advert, and none of ours finished there
        room = int(cols.job_capacity[slot]) + min(QUEUE_DEPTH, int(cols.max_queued[slot]))
        return self.capacity.running_at(address) < room

    # --------------------------------------------------------------- gossip
    def validate(self, data: bytes, sender: PeerId) -> Advert:
        """GossipSub validator: the advert, or ``MessageError`` to drop it unrelayed."""
        signed = decode_signed(data, MAX_ADVERT_BYTES)
        advert = self.verifier.open(signed, Advert)
        if advert.peer_id != sender:
            raise SignatureError(f"advert of {advert.peer_id} published by peer {sender}")
        return advert

    def accept(self, advert: Advert) -> bool:
        """Record a validated advert (newer adverts replace older ones); False when a new
        provider was refused because the book is full."""
        now = self.clock()
        entry = self.entries.get(advert.provider)
        if entry is None and len(self.entries) >= self.max_providers:
            self.refused += 1
            log.warning("provider book full (%d); %s refused", self.max_providers, advert.provider)
            return False
        self.departed.pop(advert.provider, None)
        if entry is None:
            entry = BookEntry(advert, now)
            self.entries[advert.provider] = entry
            log.info("provider %s joined the book (%s)", advert.provider, advert.peer_id)
        else:
            entry.advert, entry.seen_at = advert, now
        joined = self.columns.slot(advert.provider) is None
        self.columns.upsert(offer_of(advert, now))
        if joined:
            self.capacity.refresh(advert.provider)
        self.columns.settle_inflight(advert.provider, now, INFLIGHT_GRACE_S)
        self._apply_chain(entry)
        return True

    def expire(self) -> list[str]:
        """Remove providers silent for longer than the TTL (or past their advert's expiry)."""
        now = self.clock()
        gone = [
            a
            for a, e in self.entries.items()
            if now - e.seen_at > self.ttl_s or now > e.advert.expires_at
        ]
        for address in gone:
            del self.entries[address]
            self.departed[address] = now
            while len(self.departed) > self.max_providers:  # oldest departures first
                del self.departed[next(iter(self.departed))]
            self.columns.remove(address)
            log.info("provider %s left the book (silent)", address)
        return gone

    # ---------------------------------------------------------------- chain
    def stake_due(self) -> list[str]:
        now = self.clock()
        return [
            a for a, e in self.entries.items() if now - e.stake_checked_at >= self.stake_refresh_s
        ]

    def set_chain_facts(
        self, address: str, *, registered: bool, free_stake: int, group: int
    ) -> None:
        entry = self.entries.get(address)
        if entry is None:
            return
        entry.registered, entry.free_stake, entry.stake_checked_at = (
            registered,
            free_stake,
            self.clock(),
        )
        self.columns.set_stake(address, free_stake if registered else -1, group)

    def _apply_chain(self, entry: BookEntry) -> None:
        if entry.stake_checked_at:
            address = entry.advert.provider
            slot = self.columns.slot(address)
            group = int(self.columns.group[slot]) if slot is not None else 0
            self.columns.set_stake(address, entry.free_stake if entry.registered else -1, group)

    def set_reputation(self, address: str, lower_bound: float, newcomer: bool) -> None:
        entry = self.entries.get(address)
        if entry is not None:
            entry.reputation = lower_bound
        self.columns.set_reputation(address, lower_bound, newcomer)

    def record_check(
        self, address: str, dtype: str, *, passed: bool, tflops: float, devices: int, reason: str
    ) -> None:
        """A challenge's verdict on ``dtype``: a pass keeps the challenged figure, marked
        verified; a fail makes it zero until a later pass (later adverts do not lift it)."""
        self.columns.set_measured(address, dtype, tflops if passed else 0.0)
        entry = self.entries.get(address)
        if entry is not None:
            check = SpeedCheck(passed, tflops, devices, self.clock(), "" if passed else reason)
            entry.checks[dtype] = check

    def mark_busy(self, address: str) -> None:
        """The provider refused a job as busy: no free slot there until it advertises again
        (or one of ours finishes there)."""
        self.columns.mark_full(address, self.clock())

    def add_inflight(self, address: str, gpus: int) -> None:
        """``gpus`` more of the provider's GPUs are taken by a job seated on chain, until an
        advert newer than this shows them."""
        self.columns.add_inflight(address, gpus, time.time())

    @property
    def version(self) -> int:
        """Changes to the book so far: equal versions mean a match would see the same book."""
        return self.columns.version

    def groups_of(self, addresses: Iterable[str]) -> set[int]:
        """The operator groups (non-zero) the providers at ``addresses`` belong to."""
        cols = self.columns
        groups = set()
        for address in addresses:
            slot = cols.slot(address)
            if slot is not None and int(cols.group[slot]) != 0:
                groups.add(int(cols.group[slot]))
        return groups

    # ------------------------------------------------------------------ views
    def find(self, address: str) -> Advert | None:
        entry = self.entries.get(address)
        return None if entry is None else entry.advert

    def view(self) -> list[dict[str, Any]]:
        """What ``GET /providers`` shows."""
        out = []
        for address, e in self.entries.items():
            slot = self.columns.slot(address)
            measured = (
                {d: float(self.columns.tflops[slot, i]) for d, i in DTYPE_INDEX.items()}
                if slot is not None
                else dict(e.advert.benchmark.tflops)
            )
            out.append(
                {
                    "address": address,
                    "peer_id": e.advert.peer_id,
                    "multiaddrs": list(e.advert.multiaddrs),
                    "gpus": [g.model_dump() for g in e.advert.gpus],
                    "tflops": {k: v for k, v in measured.items() if v > 0},
                    "price_per_gpu_hour": str(e.advert.price_per_gpu_hour),
                    "price_per_cpu_hour": str(e.advert.price_per_cpu_hour),
                    "reputation": e.reputation,
                    "free_gpus": e.advert.free_gpus,
                    "utilization": e.advert.utilization,
                    "registered": e.registered,
                    "free_stake": str(e.free_stake),
                    "last_seen": e.seen_at,
                }
            )
        return out

    def slot_occupancy(self) -> float:
        """Mean job-slot occupancy the adverts report (their ``utilization``: running /
        concurrent jobs), weighted by GPU count."""
        total = sum(max(len(e.advert.gpus), 1) for e in self.entries.values())
        if not total:
            return 0.0
        busy = sum(max(len(e.advert.gpus), 1) * e.advert.utilization for e in self.entries.values())
        return busy / total


__all__ = [
    "BookEntry",
    "MessageError",
    "ProviderBook",
    "SpeedCheck",
    "fingerprint_key",
    "offer_of",
]
