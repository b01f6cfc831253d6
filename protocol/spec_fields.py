"""Field types of the job spec: bounded durations, sizes, token amounts, relative paths.

Each parses the friendly YAML spelling (``10m``, ``1GiB``, ``"2.50"``) into an integer
and serializes back to the shortest exact spelling, so a spec's canonical form reads
like what its author wrote. :class:`SpecModel` is the base of every spec model.
"""

from __future__ import annotations

import difflib
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from protocol.errors import MessageError
from protocol.ids import Wei, from_wei, to_wei
from protocol.units import format_duration, format_size, parse_duration, parse_size

MIN_TIMEOUT_S = 1
MAX_TIMEOUT_S = 7 * 86400
MAX_OUTPUT_BYTES = 64 * 2**30
MAX_PRICE_TOKENS = Decimal(1_000_000)


def field_error(field: str, message: str, **context: str) -> PydanticCustomError:
    """An error about ``field`` of the model being validated (its path gets ``field`` added)."""
    return PydanticCustomError("spec_field", message, {"field": field, **context})


class SpecModel(BaseModel):
    """Frozen; unknown keys are errors that suggest the nearest valid field name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = list(cls.model_fields)
            for key in data:
                if key not in known:
                    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise field_error(
                        str(key), "unknown field{hint}; valid fields: {valid}",
                        hint=hint, valid=", ".join(known),
                    )  # fmt: skip
        return data


def _relative_path(value: object) -> str:
    """A POSIX path inside the job's directory: no absolute paths, no ``..``."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not 0 < len(value) <= 256:
        raise ValueError("must be 1 to 256 characters")
    if value.startswith("/") or "\\" in value or "\x00" in value:
        raise ValueError("must be a relative POSIX path")
    parts = value.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError("must not contain empty, '.' or '..' segments")
    return value


RelativePath = Annotated[str, PlainValidator(_relative_path)]


def _price(value: object) -> Wei:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError('must be an amount of payment tokens, e.g. "2.50"')
    try:
        wei = to_wei(str(value))
    except MessageError as exc:
        raise ValueError(str(exc)) from exc
    if wei == 0:
        raise ValueError("must be more than 0")
    if from_wei(wei) > MAX_PRICE_TOKENS:
        raise ValueError(f"must be at most {MAX_PRICE_TOKENS} tokens")
    return wei


def _format_price(wei: int) -> str:
    return format(from_wei(wei).normalize(), "f")


TokenAmount = Annotated[
    Wei, PlainValidator(_price), PlainSerializer(_format_price, return_type=str)
]


def _bounded(parse: Any, low: int, high: int, show: Any) -> Any:
    def check(value: object) -> int:
        amount: int = parse(value)
        if not low <= amount <= high:
            raise ValueError(f"must be between {show(low)} and {show(high)}")
        return amount

    return check


Duration = Annotated[
    int,
    PlainValidator(_bounded(parse_duration, MIN_TIMEOUT_S, MAX_TIMEOUT_S, format_duration)),
    PlainSerializer(format_duration, return_type=str),
]
Size = Annotated[
    int,
    PlainValidator(_bounded(parse_size, 1, MAX_OUTPUT_BYTES, format_size)),
    PlainSerializer(format_size, return_type=str),
]
