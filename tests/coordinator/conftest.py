"""Fixtures of the coordinator tests: store URLs (SQLite always, PostgreSQL when a private
server can be started here) and book builders.

``postgres_url`` starts a throwaway PostgreSQL cluster (initdb + pg_ctl from the Debian
package) in a temporary directory on a free loopback port, as the ``postgres`` user when
the tests run as root, and removes it at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str | None]:
    """Base URL of a private PostgreSQL server, or None when none can be started here."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield None
        return
    if not (PG_BIN / "initdb").exists():
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="gpumarket-pg-"))
    data = root / "data"
    port = _free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    log = root / "server.log"
    started = False
    try:
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-o",
                    options,
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )
        started = True
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    except (subprocess.SubprocessError, OSError):
        yield None
    finally:
        if started:
            subprocess.run(
                _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


def _create_database(base: str) -> str:
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind (PostgreSQL only where a server could start)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'coordinator.sqlite'}"
    base = request.getfixturevalue("postgres_server")
    if base is None:
        pytest.skip("no PostgreSQL server can be started on this machine")
    return _create_database(base)
