"""A job's inputs are fetched within bounds: entries (a few blocks naming one subtree many
times are refused at once), bytes, and the time left before the commit deadline."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

import pytest
import trio

from protocol.errors import ContentError
from protocol.ids import Cid
from protocol.ipfs import MemoryContentStore, TooManyEntries, hash_bytes
from protocol.ipfs.cid import parse_cid_binary
from protocol.ipfs.unixfs import directory_ref
from provider_node.workdir import fetch_inputs

pytestmark = pytest.mark.timeout(60)


def dag_bomb(store: MemoryContentStore, width: int, levels: int) -> Cid:
    ref = hash_bytes(b"x", sink=store._put)
    for _ in range(levels):
        ref = directory_ref([(f"e{i:04d}", ref) for i in range(width)], sink=store._put)
    return parse_cid_binary(ref.cid).text


async def test_a_dag_bomb_input_is_refused_naming_the_limit(tmp_path: Path) -> None:
    async with MemoryContentStore() as store:
        bomb = dag_bomb(store, width=1000, levels=2)  # three blocks, a million files
        with pytest.raises(TooManyEntries) as err:
            await fetch_inputs(store, {"data": bomb}, tmp_path / "run", 1 << 30, max_entries=5000)
        assert "more than 5000 files and directories" in str(err.value)
        assert sum(1 for _ in (tmp_path / "run").rglob("*")) < 5000


async def test_entries_count_across_every_input(tmp_path: Path) -> None:
    async with MemoryContentStore() as store:
        small = dag_bomb(store, width=10, levels=1)  # 11 entries
        inputs = {"a": small, "b": small}
        await fetch_inputs(store, inputs, tmp_path / "ok", 1 << 20, max_entries=22)
        with pytest.raises(TooManyEntries):
            await fetch_inputs(store, inputs, tmp_path / "over", 1 << 20, max_entries=21)


class SlowStore(MemoryContentStore):
    """Serves file bytes one small piece at a time, slowly: an input that never arrives."""

    async def fetch_file(self, cid: Cid) -> AsyncGenerator[bytes, None]:
        async for piece in super().fetch_file(cid):
            for i in range(0, len(piece), 16):
                await trio.sleep(0.05)
                yield piece[i : i + 16]


async def test_a_download_that_outlasts_the_time_left_fails_clearly(tmp_path: Path) -> None:
    async with SlowStore() as store:
        cid = await store.add_bytes(b"y" * 4096)
        with pytest.raises(ContentError, match="did not arrive within 1 s"):
            await fetch_inputs(store, {"data": cid}, tmp_path / "run", 1 << 20, deadline_s=1.0)
        fast = await fetch_inputs(
            MemoryContentStore(), {}, tmp_path / "empty", 1 << 20, deadline_s=1.0
        )
        assert fast == 0
