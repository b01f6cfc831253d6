"""The one place domain errors become HTTP responses: ``{"error": <name>, "detail": ...}``.

Request bodies the API refuses before any route sees them (see :mod:`coordinator.api.bodies`)::

    MessageError (protocol.errors)
    └── BodyRefused                 base: a request body the API will not read or parse
        ├── BodyTooLarge            over the route's byte cap (413), refused before reading
        ├── UnsupportedMediaType    a Content-Type other than JSON (415)
        └── InvalidBody             not one JSON object: malformed, too deep, duplicate keys (400)
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from coordinator.errors import (
    InvalidTransition,
    NotAuthorized,
    NotOurJob,
    PageNotFound,
    Unavailable,
    UnknownJob,
)
from coordinator.verification.reputation import UnknownProvider
from protocol.errors import (
    ChainError,
    ContentError,
    GpuMarketError,
    MatchError,
    MessageError,
    SignatureError,
    SpecError,
)


class BodyRefused(MessageError):
    """A request body the API will not read or parse."""


class BodyTooLarge(BodyRefused):
    def __init__(self, limit: int, declared: int | None = None) -> None:
        self.limit = limit
        self.declared = declared
        size = "a chunked body passed" if declared is None else f"Content-Length {declared} is over"
        super().__init__(f"request body too large: {size} this route's limit of {limit} bytes")


class UnsupportedMediaType(BodyRefused):
    def __init__(self, media_type: str) -> None:
        self.media_type = media_type
        super().__init__(f"request body must be application/json, not {media_type[:60]!r}")


class InvalidBody(BodyRefused):
    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"request body refused: {problem}")


# Most specific first: the first matching class decides the status.
STATUS: tuple[tuple[type[GpuMarketError], int], ...] = (
    (BodyTooLarge, 413),
    (UnsupportedMediaType, 415),
    (UnknownJob, 404),
    (PageNotFound, 404),
    (UnknownProvider, 404),
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
        # An error may carry the name clients know it by (contract errors, UnknownJob).
        name = getattr(exc, "error_name", "") or type(exc).__name__
        return JSONResponse({"error": name, "detail": str(exc)}, status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return JSONResponse(
            {"error": "RequestValidationError", "detail": problems}, status_code=422
        )
