"""``gpumarket market``: the coordinator's live provider book, as a requester sees it."""

from __future__ import annotations

import time

from protocol.views import ProviderRow, Providers
from wallet.coordinator import CoordinatorClient
from wallet.settings import WalletSettings

DEFAULT_LIMIT = 100


def providers(settings: WalletSettings, *, limit: int = DEFAULT_LIMIT) -> Providers:
    """``GET /providers?limit=``: rows cheapest GPU-hour first, and the book's size."""
    with CoordinatorClient(settings.need("coordinator_url")) as client:
        return client.provider_table(limit)


def gib(value: int) -> str:
    return f"{value / 2**30:.0f} GiB" if value else "-"


def tflops(row: ProviderRow) -> str:
    """``fp32 40 (verified), bf16 600``: measured figures are marked."""
    verified = set(row.verified)
    return (
        ", ".join(
            f"{d} {v:g}" + (" (verified)" if d in verified else "")
            for d, v in sorted(row.tflops.items())
        )
        or "-"
    )


def ago(at: float, now: float | None = None) -> str:
    seconds = max(0.0, (time.time() if now is None else now) - at)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def software(row: ProviderRow) -> str:
    return " / ".join(v or "-" for v in (row.driver, row.cuda, row.torch))
