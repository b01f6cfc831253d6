"""Process supervision: whole process groups stop, failures name their cause."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from devnet.process import is_alive, spawn, stop, wait_ready
from protocol.devnet_state import DevnetState, load_state, save_state
from protocol.errors import DevnetError

SH = "/bin/sh"


def _children_of(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


def test_stop_kills_the_whole_group_even_when_sigterm_is_ignored(tmp_path: Path) -> None:
    # The parent ignores SIGTERM and has two children of its own.
    script = "trap '' TERM; sleep 300 & sleep 300 & wait"
    record = spawn("stubborn", [SH, "-c", script], log=tmp_path / "log", workdir=tmp_path)
    deadline = time.monotonic() + 5
    while len(_children_of(record.pgid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = _children_of(record.pgid)
    assert len(members) == 3
    stop(record, grace=0.5)
    assert not any(is_alive(pid) for pid in members)


def test_wait_ready_timeout_names_the_cause_and_leaves_nothing(tmp_path: Path) -> None:
    record = spawn(
        "sleeper", [SH, "-c", "echo booting; sleep 300"], log=tmp_path / "log", workdir=tmp_path
    )
    with pytest.raises(DevnetError, match=r"never-ready did not become ready within 0.5s") as info:
        wait_ready(record, lambda: False, timeout=0.5, what="never-ready")
    assert "booting" in str(info.value)
    assert not is_alive(record.pid)


def test_wait_ready_reports_an_early_exit_with_its_log(tmp_path: Path) -> None:
    record = spawn(
        "crasher", [SH, "-c", "echo boom >&2; exit 3"], log=tmp_path / "log", workdir=tmp_path
    )
    with pytest.raises(DevnetError, match="exited before it became ready") as info:
        wait_ready(record, lambda: False, timeout=10, what="crasher")
    assert "boom" in str(info.value)


def test_missing_tool_is_named(tmp_path: Path) -> None:
    with pytest.raises(DevnetError, match="not found; run `make bootstrap`"):
        spawn("ghost", [str(tmp_path / "no-such-binary")], log=tmp_path / "log", workdir=tmp_path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no devnet state file"),
        ("{not json", "is not JSON"),
        (json.dumps({"version": 99}), "has version 99, expected 1"),
        (json.dumps([1, 2]), "has version 'list'"),
        (json.dumps({"version": 1, "processes": [{"pid": "x"}]}), "is invalid"),
    ],
)
def test_bad_state_file_gives_one_clear_error(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "state.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DevnetError, match=expected):
        load_state(path)


def test_state_round_trip_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "state.json"
    save_state(path, DevnetState(rpc_url="http://127.0.0.1:1", chain_id=31337))
    assert load_state(path).chain_id == 31337
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_stop_ignores_a_recycled_pid(tmp_path: Path) -> None:
    # A record whose PID now belongs to an unrelated process (here: this test) is left alone.
    other = tmp_path / "elsewhere"
    other.mkdir()
    record = spawn("x", [SH, "-c", "exit 0"], log=tmp_path / "log", workdir=tmp_path)
    forged = record.model_copy(
        update={"pid": os.getpid(), "pgid": os.getpgid(0), "workdir": str(other)}
    )
    stop(forged, grace=0.1)
    assert is_alive(os.getpid())


def test_port_probe_sees_a_taken_port() -> None:
    from devnet.process import port_is_free, require_free_port

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not port_is_free(port)
        with pytest.raises(DevnetError, match=f"anvil: port 127.0.0.1:{port} is already in use"):
            require_free_port(port, "anvil")
