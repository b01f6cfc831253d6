"""Wall-clock time as an injectable dependency.

Expiry and replay checks ask a :class:`Clock` for the time so tests can move it by hand
(:class:`ManualClock`) instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Something that tells Unix time in seconds."""

    def now(self) -> float: ...


class SystemClock:
    """The host's wall clock."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        self._now += seconds

    def set(self, value: float) -> None:
        self._now = value


SYSTEM_CLOCK = SystemClock()
