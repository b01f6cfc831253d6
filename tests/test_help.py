"""``--help`` of every command reads as prose: the description flows to the terminal's
width, with no line broken in the middle of a sentence by a hard-wrapped help string."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

import gpumarket_cli

WIDTH = 220
"""Wide enough that no sentence of a description needs to wrap."""


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    subcommands = getattr(group, "commands", None)  # a group (typer brings its own click)
    if subcommands:
        for name, sub in sorted(subcommands.items()):
            if not sub.hidden:
                yield from commands(sub, (*path, name))


def description(text: str) -> list[str]:
    """The lines between ``Usage:`` and the first box (options, commands).

    The first paragraph of a help text is reflowed; later ones keep their line breaks.
    """
    head = text.split("╭")[0]
    lines = [line.strip() for line in head.splitlines()]
    return [line for line in lines if line and not line.startswith("Usage:")]


def broken(lines: list[str]) -> list[str]:
    """Lines that end mid-sentence although the width left room for more.

    Example commands (``gpumarket ...``) and indented verbatim blocks may end anywhere.
    """
    return [
        line
        for line in lines
        if len(line) < WIDTH - 40
        and not re.search(r"[.:;!?)]$", line)
        and not line.startswith(("gpumarket", "-", "$"))
    ]


def test_every_help_text_flows_without_mid_sentence_breaks() -> None:
    root = typer.main.get_command(gpumarket_cli.app)
    runner = CliRunner()
    problems: dict[str, list[str]] = {}
    checked = 0
    for path in commands(root):
        shown = runner.invoke(
            gpumarket_cli.app, [*path, "--help"], terminal_width=WIDTH, env={"COLUMNS": str(WIDTH)}
        )
        assert shown.exit_code == 0, (path, shown.output)
        checked += 1
        bad = broken(description(shown.output))
        if bad:
            problems[" ".join(path) or "gpumarket"] = bad
    assert checked > 30  # every group and its commands were walked
    assert problems == {}


def test_the_check_sees_a_hard_wrapped_help_string() -> None:
    app = typer.Typer(help="Intro.\n\nA sentence broken\nin the middle.\n\nAnother paragraph.")

    @app.command()
    def run() -> None:
        """Runs."""

    @app.command()
    def stop() -> None:
        """Stops."""

    shown = CliRunner().invoke(app, ["--help"], terminal_width=WIDTH, env={"COLUMNS": str(WIDTH)})
    assert broken(description(shown.output)) == ["A sentence broken"]
