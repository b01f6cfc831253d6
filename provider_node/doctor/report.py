"""The doctor's findings: one :class:`Check` per thing checked, a :class:`Report` of them,
and the report as the lines ``gpumarket provider doctor`` prints."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class CheckStatus(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, what was found, and how to fix it when not ok."""

    name: str
    verdict: CheckStatus
    must_have: bool
    found: str
    fix: str | None = None

    @property
    def blocking(self) -> bool:
        """A must-have that failed: the daemon must not start."""
        return self.must_have and self.verdict is CheckStatus.FAIL

    def line(self) -> str:
        """The check as one line of text, with its fix."""
        need = "must-have" if self.must_have else "optional"
        text = f"{self.verdict.value.upper():4} {self.name} ({need}): {self.found}"
        return (
            f"{text}; fix: {self.fix}" if self.fix and self.verdict is not CheckStatus.OK else text
        )

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "must_have": self.must_have,
            "found": self.found,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def blocking(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.blocking)

    def get(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def view(self) -> dict[str, Any]:
        return {
            "ready": not self.blocking,
            "checks": [c.view() for c in self.checks],
        }


def report_lines(report: Report) -> list[str]:
    lines = [c.line() for c in report.checks]
    if report.blocking:
        names = ", ".join(c.name for c in report.blocking)
        lines.append(f"not ready: {len(report.blocking)} must-have check(s) failed ({names})")
    else:
        lines.append("ready: every must-have check passed")
    return lines
