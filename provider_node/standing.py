"""A provider's standing with a coordinator: its reputation there, read over the HTTP API.

``GET {coordinator}/providers/{address}/standing`` answers a
:class:`protocol.views.StandingView`: ``alpha``, ``beta``, ``mean``, ``lower_bound``,
``evidence``, ``established``, ``newcomer``, ``updated_at``, ``outcomes``
(``successes``, ``slashes``, ``faults``, ``timeouts``, ``withheld``) and ``checks`` (its
latest speed challenge per dtype). The provider parses
the shared view model, never the coordinator's code. Every failure is a
:class:`StandingUnavailable` whose message is one line.
"""

from __future__ import annotations

import time

import httpx

from protocol.errors import GpuMarketError
from protocol.tls import client_tls
from protocol.views import StandingView, ViewMismatch, describe_checks, parse_view

TIMEOUT_S = 10.0
COUNTS = ("successes", "slashes", "faults", "timeouts", "withheld")


class StandingUnavailable(GpuMarketError):
    """The coordinator could not be reached, does not know the provider, or answered
    something else than a standing."""

    def __init__(self, url: str, detail: str, status: int | None = None) -> None:
        self.url = url
        self.detail = detail
        self.status = status
        super().__init__(f"coordinator at {url}: {detail}")


def fetch_standing(
    url: str,
    address: str,
    *,
    timeout: float = TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> StandingView:
    """The standing of ``address`` at the coordinator at ``url``."""
    base = url.rstrip("/")
    try:
        with httpx.Client(
            base_url=base, timeout=timeout, transport=transport, verify=client_tls()
        ) as http:
            resp = http.get(f"/providers/{address}/standing")
    except httpx.HTTPError as exc:
        raise StandingUnavailable(base, f"unreachable ({type(exc).__name__}: {exc})") from exc
    if resp.status_code == 404:
        raise StandingUnavailable(
            base, f"no standing for {address} yet (no verified outcome counted there)", 404
        )
    if resp.status_code >= 400:
        raise StandingUnavailable(
            base, f"answered {resp.status_code}: {_detail(resp)}", resp.status_code
        )
    try:
        return parse_view(StandingView, resp.json())
    except ViewMismatch as exc:
        raise StandingUnavailable(
            base, f"answered with something that is not a standing: {exc.problems}"
        ) from exc
    except ValueError as exc:
        raise StandingUnavailable(
            base, "answered with something that is not a standing (not JSON)"
        ) from exc


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail") or resp.text)[:300]
    except (ValueError, AttributeError):
        return resp.text[:300].replace("\n", " ")


def standing_lines(standing: StandingView, now: float | None = None) -> list[str]:
    """A standing as ``provider status`` prints it."""
    counts = standing.outcomes.model_dump()
    kind = "established" if standing.established else "newcomer (spot-checked more often)"
    return [
        f"reputation:   {standing.lower_bound:.3f} lower bound, {standing.mean:.3f} mean",
        f"posterior:    alpha {standing.alpha:.2f}, beta {standing.beta:.2f}",
        f"evidence:     {standing.evidence:.1f} outcomes in force, {kind}",
        "outcomes:     " + ", ".join(f"{counts[name]} {name}" for name in COUNTS),
        "speed:        " + describe_checks(standing.checks, time.time() if now is None else now),
    ]
