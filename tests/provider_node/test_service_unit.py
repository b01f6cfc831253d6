"""The systemd unit and its environment file match the real command line and settings, so
neither can rot: ExecStart names an installed script and a real command with real options,
every variable of the environment file is a provider setting (and, commented, shows its
default), and the file's values load as settings."""

from __future__ import annotations

import configparser
import os
import shlex
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer

import gpumarket_cli
from provider_node.doctor import UNIT_FILE
from provider_node.settings import ENV_PREFIX, ProviderSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / UNIT_FILE
ENV_FILE = ROOT / "deploy" / "provider.env"


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=True, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def env_entries() -> tuple[dict[str, str], dict[str, str]]:
    """The file's assignments, and its commented-out ``# PROVIDER_X=default`` lines."""
    set_: dict[str, str] = {}
    commented: dict[str, str] = {}
    for raw in ENV_FILE.read_text().splitlines():
        line = raw.strip()
        target = set_
        if line.startswith("# ") and line[2:].startswith(ENV_PREFIX) and "=" in line:
            line, target = line[2:], commented
        elif not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        assert name == name.strip() and name.startswith(ENV_PREFIX), raw
        assert name not in set_ and name not in commented, f"{name} twice"
        target[name] = value
    return set_, commented


def field_of(variable: str) -> str:
    return variable.removeprefix(ENV_PREFIX).lower()


def test_exec_start_is_the_installed_script_running_a_real_command() -> None:
    service = unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(argv[0]).name in scripts
    assert scripts[Path(argv[0]).name] == "gpumarket_cli:app"
    command: Any = typer.main.get_command(gpumarket_cli.app)
    words = argv[1:]
    while words and not words[0].startswith("-"):
        subcommands = getattr(command, "commands", {})  # a group (typer brings its own click)
        assert words[0] in subcommands, f"no command {words[0]!r} in {command.name}"
        command = command.commands[words.pop(0)]
    assert command.name == "run" and command.callback is not None
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    unknown = [w.split("=")[0] for w in words if w.startswith("-") and w.split("=")[0] not in known]
    assert unknown == []


def test_the_unit_delegates_its_cgroup_and_outlasts_the_shutdown_grace() -> None:
    service = unit()["Service"]
    assert service["Delegate"] == "yes"
    assert service["KillMode"] == "mixed"  # SIGTERM to the daemon only, jobs get the grace
    grace = ProviderSettings.model_fields["shutdown_grace_s"].default
    assert int(service["TimeoutStopSec"]) > grace
    assert service["EnvironmentFile"] == "/etc/gpumarket/provider.env"
    assert "provider.env" in ENV_FILE.name
    assert "RestrictNamespaces" not in service  # bubblewrap needs user namespaces


def test_every_variable_of_the_environment_file_is_a_setting() -> None:
    set_, commented = env_entries()
    fields = ProviderSettings.model_fields
    unknown = sorted(v for v in {**set_, **commented} if field_of(v) not in fields)
    assert unknown == []
    required = {f"{ENV_PREFIX}{name.upper()}" for name, f in fields.items() if f.is_required()}
    assert required <= set(set_), f"required but not set: {sorted(required - set(set_))}"


def _same(default: Any, text: str) -> bool:
    if isinstance(default, bool):
        return str(default).lower() == text.lower()
    if isinstance(default, int | float | Decimal):
        return Decimal(str(default)) == Decimal(text)
    return str(default) == text


def test_commented_variables_show_their_real_default() -> None:
    _, commented = env_entries()
    fields = ProviderSettings.model_fields
    wrong = {
        v: (fields[field_of(v)].default, text)
        for v, text in commented.items()
        if text and "..." not in text and not _same(fields[field_of(v)].default, text)
    }
    assert wrong == {}


def test_the_environment_file_loads_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    set_, _ = env_entries()
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for name, value in set_.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.runtime == set_["PROVIDER_RUNTIME"]
    assert str(settings.work_dir) == set_["PROVIDER_WORK_DIR"]
    assert settings.p2p_port == int(set_["PROVIDER_P2P_PORT"])
