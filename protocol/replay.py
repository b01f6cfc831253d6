"""Replay protection: nonces remembered until they expire, and rising sequence numbers.

Both structures are bounded. A full nonce cache refuses new messages rather than
forgetting unexpired nonces (forgetting would let a replay through); each signer also has
its own quota of remembered nonces, so one signer filling its share never crowds out
another. A full sequence tracker forgets the sender seen longest ago, whose adverts have
long expired.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict

from protocol.clock import Clock
from protocol.errors import MessageError
from protocol.ids import Address

DEFAULT_MAX_NONCES = 100_000
DEFAULT_MAX_NONCES_PER_SIGNER = 5_000
"""About 80 messages a second at the default 60 s message lifetime."""
DEFAULT_MAX_SENDERS = 10_000


class ReplayError(MessageError):
    """A message was seen before: a reused nonce or a sequence number that did not rise."""


class NonceCache:
    """Remembers ``(signer, nonce)`` pairs until their message expires (plus ``grace_s``)."""

    def __init__(
        self,
        clock: Clock,
        *,
        grace_s: float = 0,
        max_entries: int = DEFAULT_MAX_NONCES,
        max_per_signer: int = DEFAULT_MAX_NONCES_PER_SIGNER,
    ) -> None:
        self._clock = clock
        self._grace_s = grace_s
        self._max_entries = max_entries
        self._max_per_signer = max_per_signer
        self._seen: dict[tuple[str, bytes], float] = {}
        self._by_expiry: list[tuple[float, str, bytes]] = []
        self._per_signer: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def held_by(self, signer: Address) -> int:
        """How many of ``signer``'s nonces are remembered now."""
        return self._per_signer.get(str(signer), 0)

    def remember(self, signer: Address, nonce: bytes, expires_at: float) -> None:
        """Record a nonce, or raise ``ReplayError`` if ``signer`` already used it."""
        self._evict_expired()
        key = (str(signer), bytes(nonce))
        if key in self._seen:
            raise ReplayError(f"nonce 0x{nonce.hex()} from {signer} was already used (replay)")
        held = self._per_signer.get(key[0], 0)
        if held >= self._max_per_signer:
            raise MessageError(
                f"{signer} has {held} unexpired messages in flight, the most one signer may; "
                "send fewer or shorter-lived messages"
            )
        if len(self._seen) >= self._max_entries:
            raise MessageError("too many recent messages to track; try again later")
        forget_at = expires_at + self._grace_s
        self._seen[key] = forget_at
        self._per_signer[key[0]] = held + 1
        heapq.heappush(self._by_expiry, (forget_at, key[0], key[1]))

    def _evict_expired(self) -> None:
        now = self._clock.now()
        while self._by_expiry and self._by_expiry[0][0] < now:
            _, signer, nonce = heapq.heappop(self._by_expiry)
            if self._seen.pop((signer, nonce), None) is not None:
                left = self._per_signer[signer] - 1
                if left:
                    self._per_signer[signer] = left
                else:
                    del self._per_signer[signer]


class SequenceTracker:
    """The last sequence number accepted from each sender; only strictly higher ones pass."""

    def __init__(self, max_senders: int = DEFAULT_MAX_SENDERS) -> None:
        self._max_senders = max_senders
        self._last: OrderedDict[str, int] = OrderedDict()

    def last(self, sender: Address) -> int | None:
        return self._last.get(str(sender))

    def check(self, sender: Address, seq: int) -> None:
        """Raise ``ReplayError`` unless ``seq`` is above the last accepted one."""
        last = self._last.get(str(sender))
        if last is not None and seq <= last:
            raise ReplayError(
                f"sequence {seq} from {sender} is not above the last accepted {last} "
                "(replayed or stale)"
            )

    def advance(self, sender: Address, seq: int) -> None:
        """Check ``seq`` and accept it as the sender's newest."""
        self.check(sender, seq)
        self._last[str(sender)] = seq
        self._last.move_to_end(str(sender))
        while len(self._last) > self._max_senders:
            self._last.popitem(last=False)
