"""``gpumarket market``: the coordinator's live provider book, as a requester sees it."""

from __future__ import annotations

import time
from collections.abc import Mapping

from protocol.views import ProviderRow, Providers, SpeedCheckView
from wallet.coordinator import CoordinatorClient
from wallet.settings import WalletSettings

DEFAULT_LIMIT = 100


def providers(settings: WalletSettings, *, limit: int = DEFAULT_LIMIT) -> Providers:
    """``GET /providers?limit=``: rows cheapest GPU-hour first, and the book's size."""
    with CoordinatorClient(settings.need("coordinator_url")) as client:
        return client.provider_table(limit)


def gib(value: int) -> str:
    return f"{value / 2**30:.0f} GiB" if value else "-"


def tflops(row: ProviderRow, now: float | None = None) -> str:
    """``bf16 780 verified 12m ago, fp32 51``: each figure, and when a challenge last
    checked it; a dtype whose latest challenge failed shows as failed, with why."""
    parts = [
        f"{d} {v:g}"
        + (
            f" verified {ago(row.checks[d].at, now)}"
            if d in row.checks and row.checks[d].passed
            else ""
        )
        for d, v in sorted(row.tflops.items())
    ]
    parts += [f"{d} failed {ago(c.at, now)}" for d, c in sorted(row.checks.items()) if not c.passed]
    return ", ".join(parts) or "-"


def speed(checks: Mapping[str, SpeedCheckView], now: float | None = None) -> str:
    """``bf16 780 TFLOPS verified 12m ago (8 GPUs)``: a provider's challenged figures."""
    parts = []
    for d, c in sorted(checks.items()):
        gpus = f" ({c.devices} devices)" if c.devices > 1 else ""
        if c.passed:
            parts.append(f"{d} {c.tflops:g} TFLOPS verified {ago(c.at, now)}{gpus}")
        else:
            parts.append(f"{d} {c.tflops:g} TFLOPS failed {ago(c.at, now)}: {c.reason}")
    return "; ".join(parts) or "not challenged yet"


def ago(at: float, now: float | None = None) -> str:
    seconds = max(0.0, (time.time() if now is None else now) - at)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def software(row: ProviderRow) -> str:
    return " / ".join(v or "-" for v in (row.driver, row.cuda, row.torch))
