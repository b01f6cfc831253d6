"""The job runner: every error a step raises is logged and retried, grouped or not, and
only unexpected ones are logged as crashes."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest
import trio

from coordinator.lifecycle.driver import JobDriver
from coordinator.lifecycle.runner import JobRunner
from coordinator.signals import Signals
from protocol.errors import ChainError, ContentError, leaves


class Steps:
    """A driver whose steps raise the given errors in turn, then finish the job."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def step(self, job_id: str) -> bool:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return True


async def run(driver: Steps) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            runner = JobRunner(cast(JobDriver, driver), Signals(), nursery, poll_s=0.01)
            runner.wake("0x" + "ab" * 32)


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, bool]]:
    return [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]


async def test_expected_errors_in_a_group_are_one_warning_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="coordinator.lifecycle.runner")
    nested = ExceptionGroup(
        "seats", [ChainError("node unreachable"), ExceptionGroup("inner", [ContentError("gone")])]
    )
    driver = Steps(ContentError("plain"), nested)
    await run(driver)
    assert driver.calls == 3  # two failed steps retried, the third finished the job
    job = "0x" + "ab" * 8
    assert lines(caplog) == [
        ("WARNING", f"job {job}: step failed: plain", False),
        ("WARNING", f"job {job}: step failed: node unreachable; gone", False),
    ]


async def test_a_bug_is_logged_as_a_crash_with_its_traceback_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="coordinator.lifecycle.runner")
    mixed = ExceptionGroup("seats", [ChainError("late"), KeyError("seat")])
    driver = Steps(RuntimeError("bug"), mixed)
    await run(driver)
    assert driver.calls == 3
    job = "0x" + "ab" * 8
    assert lines(caplog) == [
        ("ERROR", f"job {job}: step crashed", True),
        ("WARNING", f"job {job}: step failed: late", False),
        ("ERROR", f"job {job}: step crashed", True),
    ]


def test_leaves_opens_groups_at_every_depth() -> None:
    a, b, c = ValueError("a"), KeyError("b"), ChainError("c")
    group: Any = ExceptionGroup("x", [a, ExceptionGroup("y", [b, ExceptionGroup("z", [c])])])
    assert leaves(group) == [a, b, c]
    assert leaves(a) == [a]
