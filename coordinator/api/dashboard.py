"""The read-only dashboard: one HTML page and its script and style, served as files.

Everything it shows it reads from this API in the browser (``/providers``, ``/jobs``,
``/jobs/{id}``, ``/jobs/{id}/events``, ``/history/...``); no build step, no third-party code.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse

from coordinator.errors import PageNotFound

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"
FILES = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def install(app: FastAPI) -> None:
    """Add ``/dashboard`` (the page) and ``/dashboard/{asset}`` to ``app``."""

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    @app.get("/dashboard", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(ASSETS / "index.html", media_type="text/html", headers=HEADERS)

    @app.get("/dashboard/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        media = FILES.get(name)
        if media is None:
            raise PageNotFound(name[:64])
        return FileResponse(ASSETS / name, media_type=media, headers=HEADERS)
