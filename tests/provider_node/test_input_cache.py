"""Inputs kept by CID on the provider: a second job using the same input does not fetch it
again, every use hashes the cached copy first (a changed copy is dropped and fetched
afresh), the cache stays within its size, and a crash leaves nothing half-written."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from protocol.ipfs import MemoryContentStore, TooManyEntries
from provider_node.inputcache import CONTENT, TEMP_PREFIX, InputCache
from provider_node.workdir import INPUT_FETCHED, INPUT_FROM_CACHE, INPUT_LOG, fetch_inputs

pytestmark = pytest.mark.timeout(60)


class CountingStore(MemoryContentStore):
    """Counts downloads per CID."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: dict[str, int] = {}

    async def get(self, cid: str, dest: Path, **kw: Any) -> Path:
        self.gets[cid] = self.gets.get(cid, 0) + 1
        return await super().get(cid, dest, **kw)


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


async def test_a_second_job_takes_the_input_from_the_cache(tmp_path: Path) -> None:
    store = CountingStore()
    async with store:
        model = await store.add_directory(
            tree(tmp_path / "model", {"weights.bin": b"w" * 5000, "cfg/a.json": b"{}"})
        )
        text = await store.add_bytes(b"a prompt")
        cache = InputCache(tmp_path / "cache", 1 << 20)
        inputs = {"model": model, "prompt": text}
        for run in ("one", "two", "three"):
            await fetch_inputs(store, inputs, tmp_path / run, 1 << 20, cache=cache)
            got = tmp_path / run / "inputs"
            assert (got / "model" / "weights.bin").read_bytes() == b"w" * 5000
            assert (got / "model" / "cfg" / "a.json").read_bytes() == b"{}"
            assert (got / "prompt" / "prompt").read_bytes() == b"a prompt"
            assert (got / "model" / "weights.bin").stat().st_mode & 0o222 == 0  # read-only
        assert store.gets == {model: 1, text: 1}
        assert (cache.stats.hits, cache.stats.misses) == (4, 2)


async def test_a_changed_cached_copy_is_dropped_and_fetched_again(tmp_path: Path) -> None:
    store = CountingStore()
    async with store:
        cid = await store.add_bytes(b"original bytes")
        cache = InputCache(tmp_path / "cache", 1 << 20)
        await fetch_inputs(store, {"data": cid}, tmp_path / "one", 1 << 20, cache=cache)
        cached = tmp_path / "cache" / cid / CONTENT
        os.chmod(cached, 0o644)  # what a job run without a sandbox could do
        cached.write_bytes(b"tampered bytes")
        await fetch_inputs(store, {"data": cid}, tmp_path / "two", 1 << 20, cache=cache)
        assert (tmp_path / "two" / "inputs" / "data" / "data").read_bytes() == b"original bytes"
        assert store.gets[cid] == 2 and cache.stats.rejected == 1
        assert (tmp_path / "cache" / cid / CONTENT).read_bytes() == b"original bytes"


async def test_the_least_recently_used_go_when_the_cache_is_full(tmp_path: Path) -> None:
    store = CountingStore()
    async with store:
        a, b, c = [await store.add_bytes(bytes([i]) * 4000) for i in range(3)]
        cache = InputCache(tmp_path / "cache", 9000)  # room for two
        for i, cid in enumerate((a, b, a, c)):  # a is used again before c arrives
            await fetch_inputs(store, {"x": cid}, tmp_path / f"r{i}", 1 << 20, cache=cache)
        kept = {p.name for p in cache.entries()}
        assert kept == {a, c} and cache.used_bytes() <= 9000
        too_big = await store.add_bytes(b"z" * 10_000)
        await fetch_inputs(store, {"x": too_big}, tmp_path / "big", 1 << 20, cache=cache)
        assert too_big not in {p.name for p in cache.entries()}


async def test_a_cached_input_counts_against_the_entry_limit(tmp_path: Path) -> None:
    store = CountingStore()
    async with store:
        files = {f"f{i}": b"." for i in range(10)}
        cid = await store.add_directory(tree(tmp_path / "many", files))
        cache = InputCache(tmp_path / "cache", 1 << 20)
        await fetch_inputs(store, {"d": cid}, tmp_path / "one", 1 << 20, cache=cache)
        with pytest.raises(TooManyEntries):
            await fetch_inputs(
                store, {"d": cid}, tmp_path / "two", 1 << 20, max_entries=5, cache=cache
            )


def test_a_crash_mid_write_leaves_nothing_at_the_next_start(tmp_path: Path) -> None:
    leftover = tmp_path / "cache" / f"{TEMP_PREFIX}bafy-1"
    (leftover / CONTENT).mkdir(parents=True)
    os.chmod(leftover / CONTENT, 0o555)
    cache = InputCache(tmp_path / "cache", 1 << 20)
    assert not leftover.exists() and cache.entries() == []


async def test_each_input_logs_whether_it_came_from_the_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = CountingStore()
    async with store:
        cid = await store.add_bytes(b"d" * 3000)
        cache = InputCache(tmp_path / "cache", 1 << 20)
        caplog.set_level(logging.INFO, logger="provider_node.workdir")
        for run in ("one", "two"):
            await fetch_inputs(store, {"data": cid}, tmp_path / run, 1 << 20, cache=cache)
        placed = [r.args for r in caplog.records if r.msg == INPUT_LOG]
        assert [(a[0], a[1], a[2], a[3]) for a in placed] == [  # type: ignore[index]
            ("data", cid, INPUT_FETCHED, 3000),
            ("data", cid, INPUT_FROM_CACHE, 3000),
        ]
