"""Canonical encoding of wire messages.

The canonical form is JSON with keys sorted, no insignificant whitespace, UTF-8 (no
``\\u`` escapes for non-ASCII), integers as integers, bytes as ``0x`` hex (done by the
field types) and finite floats in Python's shortest round-trip form. One value has
exactly one encoding, so its bytes can be signed and hashed. Keys sort by code point,
which matches RFC 8785 for every key in the basic multilingual plane.

Decoding refuses oversized input, duplicate keys, NaN/Infinity and non-object tops
before any model sees the data.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from pydantic import BaseModel

from protocol.errors import MessageError
from protocol.registry import MAX_MESSAGE_BYTES

MAX_DEPTH = 32
SAFE_RECURSION_LIMIT = 3000
"""Python's recursion limit for our processes. Some dependencies (py_ecc, imported by web3)
raise it to 100,000 at import, which lets C parsers such as ``json`` recurse until the C
stack overflows and the process dies; at this limit they raise ``RecursionError`` instead."""


def restore_recursion_limit() -> int:
    """Lower the recursion limit back to :data:`SAFE_RECURSION_LIMIT` (call after imports)."""
    if sys.getrecursionlimit() > SAFE_RECURSION_LIMIT:
        sys.setrecursionlimit(SAFE_RECURSION_LIMIT)
    return sys.getrecursionlimit()


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def canonical_json(value: Any) -> bytes:
    """Encode a JSON-compatible value canonically; raise ``MessageError`` if it is not one."""
    _check_depth(value, 0)
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise MessageError(f"value has no canonical JSON form: {exc}") from exc
    return text.encode("utf-8")


def encode_model(model: BaseModel) -> bytes:
    """Canonical bytes of a pydantic model, every field included."""
    return canonical_json(model.model_dump(mode="json"))


def _check_depth(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise MessageError(f"value nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MessageError(f"object key is not a string: {key!r}")
            _check_depth(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_depth(item, depth + 1)


def _check_text_depth(text: str) -> None:
    """Refuse deep nesting before parsing: the C JSON parser can overflow the stack."""
    depth = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_DEPTH:
            raise MessageError(f"message nests deeper than {MAX_DEPTH} levels")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MessageError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise MessageError(f"{name} is not allowed")


def decode_json(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """Parse untrusted JSON bytes into a dict, enforcing the size limit first."""
    if len(data) > max_bytes:
        raise MessageError(f"message is {len(data)} bytes, limit is {max_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError("message is not UTF-8") from exc
    _check_text_depth(text)
    try:
        value = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise MessageError(f"malformed JSON at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(value, dict):
        raise MessageError("message must be a JSON object")
    _check_depth(value, 0)
    return value


def is_canonical(data: bytes) -> bool:
    """True when ``data`` is exactly the canonical encoding of what it decodes to."""
    try:
        return canonical_json(decode_json(data, max_bytes=len(data))) == data
    except MessageError:
        return False
