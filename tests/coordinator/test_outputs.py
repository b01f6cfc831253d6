"""Numeric grouping of tolerance results fetched from a content store."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from coordinator.verification.outputs import tolerance_groups
from protocol.ipfs.memory import MemoryContentStore


async def add_result(store: MemoryContentStore, tmp: Path, name: str, values: list[float]) -> str:
    out = tmp / name
    out.mkdir()
    buf = io.BytesIO()
    np.save(buf, np.array(values, dtype=np.float32))
    (out / "y.npy").write_bytes(buf.getvalue())
    return await store.add_directory(out)


async def test_close_results_group_and_far_ones_do_not(tmp_path: Path) -> None:
    store = MemoryContentStore()
    a = await add_result(store, tmp_path, "a", [1.0, 2.0])
    b = await add_result(store, tmp_path, "b", [1.0, 2.000001])
    c = await add_result(store, tmp_path, "c", [1.0, 3.0])
    groups = await tolerance_groups(store, {0: a, 1: c, 2: b}, (1e-4, 0.0), 1 << 20)
    assert groups == [[0, 2], [1]]


async def test_equal_cids_need_no_download(tmp_path: Path) -> None:
    empty = MemoryContentStore()  # holds nothing: a download would fail
    cid = await add_result(MemoryContentStore(), tmp_path, "a", [1.0])
    assert await tolerance_groups(empty, {0: cid, 1: cid}, (0.1, 0.0), 1 << 20) == [[0, 1]]
