"""Revealed outputs stay pinned for the retention period, then are released."""

from __future__ import annotations

from pathlib import Path

import pytest

from devnet.ipfs import IpfsNode
from protocol.ipfs import KuboContentStore, MemoryContentStore
from protocol.ipfs.retention import PinRetention


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_outputs_are_unpinned_only_after_their_retention(tmp_path: Path) -> None:
    store = MemoryContentStore()
    first = await store.add_bytes(b"first output")
    second = await store.add_bytes(b"second output")
    clock = Clock()
    retention = PinRetention(store, tmp_path / "pins.json", 3600, clock=clock)
    retention.hold(first)
    clock.now += 1800
    retention.hold(second)
    assert await retention.sweep() == []
    assert len(store.pins) == 2

    clock.now += 1801  # first's hour is over, second's is not
    assert await retention.sweep() == [first]
    assert store.pins == {store._key(second)}

    # The holds outlive the process: a restarted provider still releases the second.
    again = PinRetention(store, tmp_path / "pins.json", 3600, clock=clock)
    assert again.holds.keys() == {second}
    clock.now += 1800
    assert await again.sweep() == [second]
    assert store.pins == set()


async def test_a_corrupt_pins_file_starts_empty(tmp_path: Path) -> None:
    (tmp_path / "pins.json").write_text("{not json")
    retention = PinRetention(MemoryContentStore(), tmp_path / "pins.json", 60)
    assert retention.holds == {}


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_unpin_on_a_real_node(ipfs: IpfsNode) -> None:
    async with KuboContentStore(ipfs.api_url) as store:
        cid = await store.add_bytes(b"an output kept for a while")
        assert cid in await store.pins()
        await store.unpin(cid)
        assert cid not in await store.pins()
        await store.unpin(cid)  # already released: nothing to do, no error
