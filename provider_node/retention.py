"""How long a provider keeps its revealed outputs pinned on its own IPFS node.

A revealed result is what the requester (and the coordinator, for a tolerance comparison)
downloads from the provider's node; ``PROVIDER_OUTPUT_RETENTION_S`` after its reveal it is
unpinned, so the node's garbage collection may reclaim it. The holds survive restarts in
``<work_dir>/output-pins.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import trio

from protocol.errors import ContentError
from protocol.files import write_atomic

log = logging.getLogger(__name__)
MAX_HOLDS = 100_000
"""Holds kept at most; past it the oldest is released early (and logged)."""


class Unpinner(Protocol):
    async def unpin(self, cid: str) -> None: ...


class OutputRetention:
    """Pins held until a deadline, persisted; :meth:`sweep` releases the expired ones."""

    def __init__(
        self,
        store: Unpinner,
        path: Path,
        retention_s: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.path = path
        self.retention_s = retention_s
        self.clock = clock
        self.holds: dict[str, float] = self._load()

    def _load(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("output pins file %s unreadable (%s): starting empty", self.path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}

    def _save(self) -> None:
        write_atomic(self.path, json.dumps(self.holds, sort_keys=True).encode())

    def hold(self, cid: str) -> None:
        """Keep ``cid`` pinned (the add pinned it) until ``retention_s`` from now."""
        self.holds[cid] = self.clock() + self.retention_s
        while len(self.holds) > MAX_HOLDS:
            oldest = min(self.holds, key=self.holds.__getitem__)
            log.warning("more than %d outputs held: releasing %s early", MAX_HOLDS, oldest)
            del self.holds[oldest]
        self._save()

    async def sweep(self) -> list[str]:
        """Unpin every output whose retention ended; returns the CIDs released."""
        now = self.clock()
        released = []
        for cid, until in sorted(self.holds.items(), key=lambda item: item[1]):
            if until > now:
                break
            try:
                await self.store.unpin(cid)
            except ContentError as exc:
                log.warning("could not unpin output %s (retried later): %s", cid, exc)
                break
            del self.holds[cid]
            released.append(cid)
        if released:
            self._save()
            log.info("released %d outputs past their retention", len(released))
        return released

    async def run(self, period_s: float = 60.0) -> None:
        while True:
            await self.sweep()
            await trio.sleep(period_s)
