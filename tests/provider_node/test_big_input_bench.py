"""The big-input bench's helpers: the seeded input is reproducible and streamed, and the
provider's input log line (as ``provider_node.workdir`` writes it) is read back."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from bench.big_input import (
    DATA_FILE,
    DATA_INPUT,
    input_placements,
    partial_bytes,
    sha256_file,
    write_seeded,
)
from bench.devnet_ready import challenged
from protocol.views import ProviderRow, SpeedCheckView
from provider_node.workdir import INPUT_FETCHED, INPUT_FROM_CACHE, INPUT_LOG


def test_the_seeded_input_is_reproducible_and_hashed_from_disk(tmp_path: Path) -> None:
    size = (9 << 20) + 7  # more than two pieces, not a whole number of them
    write_seeded(tmp_path / "a", size)
    write_seeded(tmp_path / "b", size)
    data = (tmp_path / "a").read_bytes()
    assert len(data) == size and data == (tmp_path / "b").read_bytes()
    assert data[: 1 << 20] != data[1 << 20 : 2 << 20]  # not one piece repeated
    assert sha256_file(tmp_path / "a") == hashlib.sha256(data).hexdigest()
    write_seeded(tmp_path / "c", size, seed=random.randrange(1 << 30) + 17)
    assert (tmp_path / "c").read_bytes() != data


def test_the_provider_log_lines_are_read_back_in_order() -> None:
    lines = [
        "2026-12-05 INFO provider_node.workdir: "
        + INPUT_LOG % (DATA_INPUT, "bafyone", INPUT_FETCHED, 2147483648, 41.25),
        "2026-12-05 INFO provider_node.workdir: "
        + INPUT_LOG % ("code", "bafycode", INPUT_FETCHED, 900, 0.01),
        "2026-12-05 INFO provider_node.workdir: "
        + INPUT_LOG % (DATA_INPUT, "bafyone", INPUT_FROM_CACHE, 2147483648, 9.5),
    ]
    assert input_placements("\n".join(lines)) == [
        ("bafyone", INPUT_FETCHED, 2147483648, 41.25),
        ("bafyone", INPUT_FROM_CACHE, 2147483648, 9.5),
    ]


def test_a_provider_counts_as_challenged_once_every_claimed_dtype_was_judged() -> None:
    def row(tflops: dict[str, float], checked: list[str]) -> ProviderRow:
        check = SpeedCheckView(passed=True, tflops=1.0, devices=1, at=0.0)
        return ProviderRow.model_construct(tflops=tflops, checks=dict.fromkeys(checked, check))

    assert not challenged(row({"fp32": 1.5, "fp16": 3.0}, []))
    assert not challenged(row({"fp32": 1.5, "fp16": 3.0}, ["fp32"]))
    assert challenged(row({"fp32": 1.5, "fp16": 3.0}, ["fp16", "fp32"]))
    assert challenged(row({"fp32": 1.5}, ["fp16", "fp32"]))  # fp16 failed: its claim is gone
    assert challenged(row({}, []))  # claims nothing: never challenged


def test_only_a_download_in_progress_counts_towards_the_restart(tmp_path: Path) -> None:
    work = tmp_path / "work"
    partial = work / "jobs" / "0xab" / "inputs" / "..data.fetch.partial-1a2b"
    partial.mkdir(parents=True)
    (partial / DATA_FILE).write_bytes(b"x" * 3000)
    cached = work / "input-cache" / "bafyone" / "content"
    cached.mkdir(parents=True)
    (cached / DATA_FILE).write_bytes(b"y" * 9000)  # whole, in the cache: not a download
    placed = work / "jobs" / "0xcd" / "inputs" / "data"
    placed.mkdir(parents=True)
    (placed / DATA_FILE).write_bytes(b"z" * 8000)  # a finished download
    assert partial_bytes(work) == 3000
    assert partial_bytes(tmp_path / "nothing-here") == 0
