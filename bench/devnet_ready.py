"""Waiting for a fresh devnet to settle before a bench times anything on it.

A provider that joins the book is challenged by the coordinator on every dtype it claims;
a CPU provider computes those challenges in its own daemon, on the same cores as the jobs a
bench would time. Benches that measure steady-state figures wait for them and report how
long they waited.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from protocol.views import ProviderRow
from wallet import market
from wallet.settings import WalletSettings

CHALLENGES_TIMEOUT_S = 600.0


def challenged(row: ProviderRow) -> bool:
    """Whether the coordinator has judged every dtype the provider claims (a dtype that
    failed leaves ``tflops`` and keeps its check)."""
    return set(row.tflops) <= set(row.checks)


def wait_for_join_challenges(
    settings: WalletSettings,
    count: int,
    say: Callable[[str], None],
    timeout_s: float = CHALLENGES_TIMEOUT_S,
) -> float:
    """Wait until the coordinator's book holds ``count`` providers, each challenged on
    every dtype it claims; returns the seconds waited."""
    started = time.monotonic()
    while True:
        rows = market.providers(settings).providers
        if len(rows) >= count and all(challenged(row) for row in rows):
            waited = time.monotonic() - started
            say(f"{len(rows)} providers challenged on every claimed dtype after {waited:.1f}s")
            return waited
        if time.monotonic() - started > timeout_s:
            pending = [r.address for r in rows if not challenged(r)]
            raise SystemExit(
                f"after {timeout_s:.0f}s the coordinator lists {len(rows)} of {count} "
                f"providers, still challenging {pending}: see its log"
            )
        time.sleep(0.5)
