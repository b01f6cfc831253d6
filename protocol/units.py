"""Human-readable durations (``90s``, ``10m``, ``1h30m``) and byte sizes (``1GiB``, ``500MB``).

Parsers take untrusted spec values and return integers (seconds, bytes) or raise
``ValueError`` with a reason fit for a :class:`~protocol.errors.SpecError`. The
formatters give the shortest exact spelling, so ``parse(format(x)) == x``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(r"(\d{1,9})(d|h|m|s)")
_DURATION = re.compile(r"^(?:\d{1,9}(?:d|h|m|s))+$")

_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}
_SIZE = re.compile(r"^(\d{1,18}(?:\.\d{1,9})?)\s?([KMGT]i?B|B)$")


def parse_duration(value: object) -> int:
    """Seconds in ``value``: an integer (seconds) or text like ``90s``, ``10m``, ``1h30m``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like '10m'")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise ValueError("a duration is a number of seconds or text like '10m'")
    text = value.strip()
    if len(text) > 32 or not _DURATION.match(text):
        raise ValueError(
            f"{value!r} is not a duration; use a number with s, m, h or d (e.g. '90s', '1h30m')"
        )
    units = [unit for _, unit in _DURATION_PART.findall(text)]
    if len(set(units)) != len(units) or units != sorted(units, key=list(_DURATION_UNITS).index):
        raise ValueError(f"{value!r}: give each unit once, largest first (e.g. '1h30m')")
    return sum(int(amount) * _DURATION_UNITS[unit] for amount, unit in _DURATION_PART.findall(text))


def format_duration(seconds: int) -> str:
    """Shortest exact spelling: ``600`` -> ``"10m"``, ``5400`` -> ``"1h30m"``."""
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _DURATION_UNITS.items():
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


def parse_size(value: object) -> int:
    """Bytes in ``value``: an integer or text like ``1GiB``, ``512MiB``, ``1.5GB``, ``100B``."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or text like '1GiB'")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise ValueError("a size is a number of bytes or text like '1GiB'")
    match = _SIZE.match(value.strip())
    if match is None:
        raise ValueError(
            f"{value!r} is not a size; use a number with B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
        )
    try:
        amount = Decimal(match.group(1)) * _SIZE_UNITS[match.group(2)]
    except InvalidOperation as exc:  # the pattern makes this unreachable; keep it honest
        raise ValueError(f"{value!r} is not a size") from exc
    if amount != amount.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(amount)


def format_size(size: int) -> str:
    """Shortest exact binary spelling: ``1073741824`` -> ``"1GiB"``."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return f"{size}B"


def describe_size(size: int) -> str:
    """A size for people, to three figures: ``1610612736`` -> ``"1.5GiB"`` (exact when whole:
    :func:`format_size`)."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size >= _SIZE_UNITS[unit]:
            if size % _SIZE_UNITS[unit] == 0:
                return f"{size // _SIZE_UNITS[unit]}{unit}"
            return f"{size / _SIZE_UNITS[unit]:.3g}{unit}"
    return f"{size}B"
