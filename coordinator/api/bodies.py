"""Untrusted JSON request bodies: a byte cap per route, then the project's one safe decoder.

FastAPI's own body handling reads the whole body into memory and gives it to ``json.loads``
with no bound on size or depth: a 200 MB body grows the process by as much, and JSON nested
100,000 levels deep overflows the C stack when a dependency has raised the recursion limit.
Routes that take JSON declare their body with :func:`json_body` instead, which

1. refuses a declared ``Content-Length`` over the route's cap with 413 without reading a byte,
2. reads a chunked (or lying) body only until it passes the cap, then refuses it with 413,
3. parses with :func:`protocol.encoding.decode_json` (depth, duplicate keys, object top),
4. validates with the route's pydantic model (422, exactly as FastAPI reported it before).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from coordinator.api.errors import BodyTooLarge, InvalidBody, UnsupportedMediaType
from protocol.encoding import decode_json
from protocol.errors import MessageError

M = TypeVar("M", bound=BaseModel)

SUBMIT_JOB_MAX_BYTES = 4 * 1024
"""``POST /jobs`` carries one 66-character job id; 4 KiB leaves room for whitespace and
clients that add fields, and nothing for an attacker."""


class SubmitJob(BaseModel):
    job_id: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$", description="the on-chain job id")


def _declared_length(request: Request, max_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.strip().isdigit():
        raise InvalidBody(f"Content-Length {declared[:40]!r} is not a byte count")
    if int(declared) > max_bytes:
        raise BodyTooLarge(max_bytes, int(declared))


def _json_media_type(request: Request) -> None:
    kind = request.headers.get("content-type")
    if kind is None:
        return
    essence = kind.split(";", 1)[0].strip().lower()
    if essence != "application/json" and not essence.endswith("+json"):
        raise UnsupportedMediaType(essence)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused with :class:`BodyTooLarge` as soon as it is known to pass
    ``max_bytes``: from ``Content-Length`` before reading, or mid-stream when chunked."""
    _declared_length(request, max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise BodyTooLarge(max_bytes)
    return bytes(body)


def json_body(model: type[M], max_bytes: int) -> Callable[[Request], Awaitable[M]]:
    """A FastAPI dependency giving the request's body as ``model``, read and parsed safely."""

    async def parse(request: Request) -> M:
        _json_media_type(request)
        raw = await read_body(request, max_bytes)
        try:
            data = decode_json(raw, max_bytes=max_bytes)
        except MessageError as exc:
            raise InvalidBody(str(exc)) from exc
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            raise RequestValidationError(problems, body=data) from exc

    return parse


def body_schema(model: type[BaseModel], max_bytes: int) -> dict[str, Any]:
    """The ``openapi_extra`` documenting a :func:`json_body` route's request body."""
    return {
        "requestBody": {
            "required": True,
            "description": f"a JSON object of at most {max_bytes} bytes",
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
