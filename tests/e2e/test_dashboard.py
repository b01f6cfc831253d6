"""The coordinator's dashboard in a real browser (headless Chromium) on the devnet.

A job runs while the market page is open: its row follows the job live over server-sent
events until it settles. Then every page is loaded afresh and what a person sees is
checked against the JSON API: provider rows, the job's state and cost, the hourly chart,
the job's timeline and cost breakdown, the provider's earnings, and a requester's own
costs opened with a signed link. Screenshots of each page are kept in the test's tmp_path.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import Browser, Element
from tests.e2e.market import TERMINAL, Market

pytestmark = pytest.mark.integration

SLOW_JOB = """\
import os, pathlib, time
time.sleep(10)
(pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"]) / "done.txt").write_text("done\\n")
"""


def slow_spec(directory: Path) -> Path:
    """A job that runs long enough for the page to open while it is in flight."""
    directory.mkdir(parents=True)
    (directory / "main.py").write_text(SLOW_JOB)
    (directory / "job.yaml").write_text(
        "name: dashboard\n"
        "runtime: {kind: torch, entrypoint: main.py}\n"
        "inputs:\n  - {name: code, path: ./}\n"
        "resources: {gpus: 0}\n"
        "verification: {redundancy: 2, compare: exact}\n"
        'price: {max_per_provider: "1.00"}\n'
        "timeout: 2m\n"
        "max_output: 1MiB\n"
    )
    return directory / "job.yaml"


def tokens(base: int) -> str:
    """As the page writes amounts: tokens with all 6 decimals."""
    return f"{base // 10**6}.{base % 10**6:06d}"


def value(page: Element, card_id: str) -> str:
    return page.by_id(card_id).one(cls="value").text


def wait_until(check: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:g}s: {what}")


def test_the_dashboard_shows_the_market_as_the_api_reports_it(
    market: Market, tmp_path: Path
) -> None:
    base = market.state.coordinator_url
    assert base is not None
    shots = tmp_path / "screenshots"
    shots.mkdir()
    requester = market.new_requester()

    with Browser(tmp_path / "chromium", height=1100) as browser:
        # A job in flight while the market page is open: its row follows it live (SSE).
        spec = slow_spec(tmp_path / "spec")
        job_id = market.submit(spec, requester, wait=False)["job_id"]
        market.wait_job(job_id, lambda v: v["state"] == "running", timeout=120, what="running")
        assert browser.open(f"{base}/dashboard") == "overview"
        row = f'tr[data-job="{job_id}"] td.state'
        assert browser.evaluate(f"document.querySelector('{row}').textContent") != "settled"
        terminal = " || ".join(f"s === '{t}'" for t in TERMINAL)
        try:
            shown = browser.wait_for(
                f"(() => {{ const c = document.querySelector('{row}');"
                f" const s = c.textContent; return c.dataset.live === 'sse' && ({terminal})"
                " ? s : ''; })()",
                timeout=240,
                what="the job's row reached a terminal state from its event stream",
            )
        finally:
            browser.screenshot(shots / "market-live.png")
        job = market.job(job_id)
        assert shown == job["state"] == "settled", job
        paid = [p for p in job["providers"] if p["outcome"] == "paid"]
        assert paid
        # The driver records the ended job into the history on its next step.
        for seat in paid:
            wait_until(
                lambda s=seat: (
                    int(
                        market.api(f"/history/providers/{s['address']}?hours=2")["total"][
                            "earnings"
                        ]
                    )
                    >= int(s["pay"])
                ),
                timeout=60,
                what=f"history of {seat['address']} holds its pay",
            )

        # ... and the market's hours hold every pay (flushed on their own timer), so the page
        # and the API below read the same figures.
        def market_earnings() -> int:
            hours = market.api("/history/market?hours=24")["hours"]
            return sum(int(h["earnings"]) for h in hours)

        pays = sum(int(seat["pay"]) for seat in paid)
        wait_until(
            lambda: market_earnings() >= pays,
            timeout=60,
            what="the market's history holds the job's pay",
        )
        seen = [market_earnings()]

        def settled_down() -> bool:  # unchanged across more than one flush (2 s on the devnet)
            time.sleep(2.5)
            seen.append(market_earnings())
            return seen[-1] == seen[-2]

        wait_until(settled_down, timeout=60, what="the market's history stopped changing")

        # -- the market page, loaded afresh
        assert browser.open(f"{base}/dashboard") == "overview"
        page = browser.dom()
        browser.screenshot(shots / "market.png")
        providers = market.api("/providers?limit=200")
        rows = page.find_all("tr", "provider-row")
        assert {r.attrs["data-address"] for r in rows} == {
            p["address"] for p in providers["providers"]
        }
        assert value(page, "card-providers") == str(providers["total"])
        for row_el, listed in zip(rows, providers["providers"], strict=True):
            # Devnet providers are CPU-only: their seats are billed per CPU-hour.
            shown = f"{tokens(int(listed['price_per_cpu_hour']))} tokens / CPU-hour"
            assert row_el.one("td", "price").text == shown
            assert row_el.one("td", "free-slots").text == str(listed["free_slots"])
            assert row_el.one("td", "utilization").find_all("polyline")  # its sparkline
        history = market.api("/history/market?hours=24")
        earned = sum(int(h["earnings"]) for h in history["hours"])
        assert earned > 0
        assert value(page, "card-earnings") == tokens(earned)
        assert value(page, "card-jobs") == str(sum(h["jobs"] for h in history["hours"]))
        bars = page.by_id("market-chart").find_all("rect", "bar")
        assert bars and any(float(b.attrs["data-value"]) > 0 for b in bars)
        job_row = page.one("tr", "job-row", data_job=job_id)
        cost = sum(int(p["pay"]) for p in paid) + int(job["fee"])
        assert job_row.one("td", "state").text == "settled"
        assert job_row.one("td", "cost").text == tokens(cost)

        # -- the job page: timeline, seats, verification, cost, its event stream replayed
        assert browser.open(f"{base}/dashboard#/job/{job_id}") == "job"
        browser.wait_for(
            "!!document.querySelector('li.event[data-state=settled]')",
            timeout=60,
            what="the job's event stream replayed to settled",
        )
        page = browser.dom()
        browser.screenshot(shots / "job.png")
        phases = [r.attrs["data-phase"] for r in page.find_all("tr", "phase-row")]
        assert phases == list(job["phases"]) and phases[0] == "queued"
        assert phases[-1] == "settle_tx_mined"
        assert len(page.by_id("timeline").find_all("rect", "step")) == len(phases)
        assert page.by_id("cost-total").one("td", "total").text == tokens(cost)
        seats = {r.attrs["data-address"] for r in page.find_all("tr", "seat-row")}
        assert seats == {p["address"] for p in job["providers"]}
        assert job["result_cid"] in page.by_id("verification").text
        events = [e.attrs["data-state"] for e in page.find_all("li", "event")]
        assert events == [e["state"] for e in market.events(job_id)]

        # -- a provider's page: its hours, its earnings as the history says, its jobs
        who = paid[0]["address"]
        assert browser.open(f"{base}/dashboard#/provider/{who}") == "provider"
        page = browser.dom()
        browser.screenshot(shots / "provider.png")
        mine = market.api(f"/history/providers/{who}?hours=48")
        assert value(page, "card-provider-earnings") == tokens(int(mine["total"]["earnings"]))
        assert value(page, "card-seats") == str(mine["total"]["jobs"])
        assert page.by_id("provider-chart").find_all("rect", "bar")
        assert page.by_id("provider-jobs").find_all("tr", "job-row", data_job=job_id)

        # -- a requester's own costs, through the signed link its wallet makes
        link = market.cli_json(
            "job",
            "costs-link",
            "--account",
            requester.name,
            "--password-file",
            str(market.password_file),
        )["url"]
        assert link.startswith(f"{base}/dashboard#/costs/{requester.address}?")
        assert browser.open(link) == "costs"
        page = browser.dom()
        browser.screenshot(shots / "costs.png")
        assert value(page, "card-spend") == tokens(cost)
        assert value(page, "card-refunds") == tokens(int(job["refund"]))
        # The job's code went to both seats and its result came back: bytes moved.
        assert value(page, "card-data") not in ("0 B", "")
        # Without the signature the page shows the API's refusal, not the costs.
        assert browser.open(f"{base}/dashboard#/costs/{requester.address}") == "error"
        assert "401" in browser.dom().by_id("error").text
        # A link whose address is not one is refused before anything is fetched.
        assert browser.open(f"{base}/dashboard#/costs/..?x=1") == "error"
        assert "not an address" in browser.dom().by_id("error").text

    for name in ("market-live", "market", "job", "provider", "costs"):
        png = (shots / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
