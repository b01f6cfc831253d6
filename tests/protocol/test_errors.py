"""Command-line commands end on the project's own errors with one line and status 1, and
keep the traceback of anything else (a bug)."""

from __future__ import annotations

import pytest

from protocol.errors import ConfigError, exits_on_error


@exits_on_error
def command(fail: BaseException | None = None) -> str:
    """A command."""
    if fail is not None:
        raise fail
    return "done"


def test_an_own_error_prints_one_line_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert command() == "done"
    with pytest.raises(SystemExit) as info:
        command(ConfigError("set PROVIDER_RPC_URL"))
    assert info.value.code == 1
    assert capsys.readouterr().err == "error: set PROVIDER_RPC_URL\n"
    assert command.__doc__ == "A command."  # typer reads the wrapped command's help


def test_any_other_exception_is_a_bug_and_propagates() -> None:
    with pytest.raises(KeyError):
        command(KeyError("x"))
