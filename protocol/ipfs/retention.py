"""Content kept pinned on an IPFS node for a retention period, then released.

A provider holds its revealed outputs (added, so already pinned: :meth:`PinRetention.hold`);
a coordinator keeps each settled job's result (:meth:`PinRetention.keep`), which its node
first has to fetch from the providers' nodes: :func:`pin_verified` streams it through the
verifying fetch into a scratch folder, adds it back (pinned, the CID computed again from
the bytes) and removes the copy. ``retention_s`` after it was held or kept, a CID is
unpinned so the node's garbage collection may reclaim it.

Holds and pending pins survive restarts in one JSON file (``{"holds": {cid: until},
"pending": [cid, ...]}``; the older flat ``{cid: until}`` form is still read), so a
restarted process still unpins what it pinned, when it should.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import trio

from protocol.errors import ContentError
from protocol.files import remove_tree, write_atomic
from protocol.ipfs.cid import normalize_cid
from protocol.ipfs.errors import (
    CidMismatch,
    ContentTooLarge,
    InvalidCid,
    LayoutError,
    MalformedBlock,
    TooManyEntries,
)
from protocol.ipfs.store import ContentStore

log = logging.getLogger(__name__)
MAX_HOLDS = 100_000
"""Holds kept at most; past it the oldest is released early (and logged)."""


class Unpinner(Protocol):
    async def unpin(self, cid: str) -> None: ...


PERMANENT = (CidMismatch, ContentTooLarge, TooManyEntries, LayoutError, MalformedBlock, InvalidCid)
"""Fetch failures that the same content would always meet: the hold is dropped."""

Fetch = Callable[[str], Awaitable[None]]
"""Brings a CID onto the node and pins it (raising ContentError when nobody serves it)."""


async def pin_verified(store: ContentStore, cid: str, scratch: Path, max_size: int) -> None:
    """Fetch ``cid`` (verified, at most ``max_size`` content bytes) and pin it on ``store``'s
    node: the bytes are added back in the fixed layout, and the CID the add computes must be
    ``cid`` again. ``scratch`` holds the copy only while this runs."""
    scratch.mkdir(parents=True, exist_ok=True)
    dest = scratch / normalize_cid(cid)
    if dest.exists() or dest.is_symlink():
        await trio.to_thread.run_sync(_remove, dest)  # left by a crash
    try:
        got = await store.get(cid, dest, max_size=max_size)
        added = await (store.add_directory(got) if got.is_dir() else store.add_file(got))
        if normalize_cid(added) != normalize_cid(cid):
            raise CidMismatch(normalize_cid(cid), normalize_cid(added))
    finally:
        await trio.to_thread.run_sync(_remove, dest)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        remove_tree(path)
    else:
        path.unlink(missing_ok=True)


class PinRetention:
    """Pins held until a deadline, persisted. :meth:`sweep` releases the expired ones;
    with a ``fetch``, :meth:`pin_pending` pins what :meth:`keep` asked for first."""

    def __init__(
        self,
        store: Unpinner,
        path: Path,
        retention_s: float,
        *,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.path = path
        self.retention_s = retention_s
        self.fetch = fetch
        self.clock = clock
        self.holds: dict[str, float] = {}
        """CID -> when it is unpinned (wall-clock seconds)."""
        self.pending: set[str] = set()
        """Held CIDs not pinned yet (their fetch is retried until their hold ends)."""
        self._load()
        self._wake = trio.Event()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("pins file %s unreadable (%s): starting empty", self.path, exc)
            return
        if not isinstance(data, dict):
            return
        holds = data["holds"] if "holds" in data else data
        if isinstance(holds, dict):
            self.holds = {
                str(k): float(v)
                for k, v in holds.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
        pending = data.get("pending", [])
        if isinstance(pending, list):
            self.pending = {str(c) for c in pending if str(c) in self.holds}

    def _save(self) -> None:
        state = {"holds": self.holds, "pending": sorted(self.pending)}
        write_atomic(self.path, json.dumps(state, sort_keys=True).encode())

    def _add(self, cid: str, pending: bool) -> None:
        self.holds[cid] = self.clock() + self.retention_s
        if pending:
            self.pending.add(cid)
        while len(self.holds) > MAX_HOLDS:
            oldest = min(self.holds, key=self.holds.__getitem__)
            log.warning("more than %d pins held: releasing %s early", MAX_HOLDS, oldest)
            del self.holds[oldest]
            self.pending.discard(oldest)
        self._save()

    def hold(self, cid: str) -> None:
        """Keep ``cid`` pinned (the add pinned it) until ``retention_s`` from now."""
        self._add(cid, pending=False)

    def keep(self, cid: str) -> bool:
        """Have ``cid`` fetched, pinned and held until ``retention_s`` from now; False when
        it is held already (its deadline is not moved) or retention is off."""
        if self.retention_s <= 0 or cid in self.holds:
            return False
        if self.fetch is None:
            raise RuntimeError("keep() needs a fetch to pin with")
        self._add(cid, pending=True)
        self._wake.set()
        return True

    async def pin_pending(self) -> list[str]:
        """Fetch and pin every kept CID not pinned yet; returns those pinned now. One that
        nobody serves stays pending (logged) and is tried again next round."""
        assert self.fetch is not None or not self.pending
        pinned: list[str] = []
        for cid in sorted(self.pending, key=lambda c: self.holds.get(c, 0.0)):
            if cid not in self.holds:
                self.pending.discard(cid)
                continue
            try:
                assert self.fetch is not None
                await self.fetch(cid)
            except PERMANENT as exc:
                # Fetching it again would fail the same way after the same download.
                log.warning("not keeping %s: %s", cid, exc)
                self.pending.discard(cid)
                del self.holds[cid]
                self._save()
                continue
            except ContentError as exc:
                log.warning("could not pin %s yet (tried again later): %s", cid, exc)
                continue
            self.pending.discard(cid)
            pinned.append(cid)
            log.info("pinned %s until %.0f", cid, self.holds[cid])
        if pinned:
            self._save()
        return pinned

    async def sweep(self) -> list[str]:
        """Unpin every CID whose retention ended; returns the CIDs released."""
        now = self.clock()
        released = []
        for cid, until in sorted(self.holds.items(), key=lambda item: item[1]):
            if until > now:
                break
            try:
                await self.store.unpin(cid)
            except ContentError as exc:
                log.warning("could not unpin %s (retried later): %s", cid, exc)
                break
            del self.holds[cid]
            self.pending.discard(cid)
            released.append(cid)
        if released:
            self._save()
            log.info("released %d pins past their retention", len(released))
        return released

    async def run(self, period_s: float = 60.0) -> None:
        """Pin what is pending and release what expired, every ``period_s`` and at once
        after each :meth:`keep`."""
        while True:
            await self.sweep()
            await self.pin_pending()
            with trio.move_on_after(period_s):
                await self._wake.wait()
            self._wake = trio.Event()
