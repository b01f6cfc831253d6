"""``gpumarket market``: the coordinator's live provider book, as a requester sees it."""

from __future__ import annotations

import time

from protocol.views import ProviderRow, Providers, ago
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
    """``bf16 780 verified 12 min ago, fp32 51``: each figure, and when a challenge last
    verified it; a dtype whose latest challenge failed shows as failed."""
    now = time.time() if now is None else now
    checks = row.checks
    parts = [
        f"{d} {v:.3g}"
        + (f" verified {ago(checks[d].at, now)}" if d in checks and checks[d].passed else "")
        for d, v in sorted(row.tflops.items())
    ]
    parts += [f"{d} failed {ago(c.at, now)}" for d, c in sorted(checks.items()) if not c.passed]
    return ", ".join(parts) or "-"


def software(row: ProviderRow) -> str:
    return " / ".join(v or "-" for v in (row.driver, row.cuda, row.torch))
