"""The one place domain errors become HTTP responses: ``{"error": <class>, "detail": ...}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from coordinator.errors import InvalidTransition, JobNotFound, NotAuthorized, NotOurJob, Unavailable
from protocol.errors import (
    ChainError,
    ContentError,
    GpuMarketError,
    MatchError,
    MessageError,
    SignatureError,
    SpecError,
)

# Most specific first: the first matching class decides the status.
STATUS: tuple[tuple[type[GpuMarketError], int], ...] = (
    (JobNotFound, 404),
    (NotAuthorized, 401),
    (SignatureError, 401),
    (NotOurJob, 409),
    (InvalidTransition, 409),
    (MatchError, 409),
    (SpecError, 422),
    (MessageError, 400),
    (Unavailable, 503),
    (ChainError, 503),
    (ContentError, 503),
)


def status_of(exc: GpuMarketError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def install(app: FastAPI) -> None:
    @app.exception_handler(GpuMarketError)
    async def domain_error(request: Request, exc: GpuMarketError) -> JSONResponse:
        return JSONResponse(
            {"error": type(exc).__name__, "detail": str(exc)}, status_code=status_of(exc)
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return JSONResponse(
            {"error": "RequestValidationError", "detail": problems}, status_code=422
        )
