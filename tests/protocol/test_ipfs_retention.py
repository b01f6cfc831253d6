"""Pins held for a retention period (a provider's revealed outputs, a coordinator's kept
results), fetched first when they are kept, then released."""

from __future__ import annotations

from pathlib import Path

import pytest

from devnet.ipfs import IpfsNode
from protocol.ipfs import ContentUnavailable, KuboContentStore, MemoryContentStore
from protocol.ipfs.retention import PinRetention, pin_verified


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


async def test_a_kept_cid_stays_pending_until_fetched_even_across_a_restart(
    tmp_path: Path,
) -> None:
    store = MemoryContentStore()
    cid = await store.add_bytes(b"a settled result", pin=False)
    serving = False

    async def fetch(wanted: str) -> None:
        if not serving:
            raise ContentUnavailable("http://provider.test", f"{wanted}: nobody serves it")
        await store.pin(wanted)

    clock = Clock()
    kept = PinRetention(store, tmp_path / "pins.json", 3600, fetch=fetch, clock=clock)
    assert kept.keep(cid)
    assert not kept.keep(cid)  # held already: the deadline does not move
    assert await kept.pin_pending() == []  # nobody serves it yet: tried again later
    assert kept.pending == {cid}

    again = PinRetention(store, tmp_path / "pins.json", 3600, fetch=fetch, clock=clock)
    assert again.pending == {cid} and again.holds == {cid: 1_000.0 + 3600}
    serving = True
    assert await again.pin_pending() == [cid]
    assert store.pins == {store._key(cid)}
    assert PinRetention(store, tmp_path / "pins.json", 3600, clock=clock).pending == set()


def test_retention_zero_keeps_nothing_and_the_flat_file_form_still_loads(tmp_path: Path) -> None:
    async def fetch(wanted: str) -> None:
        raise AssertionError("never fetched")

    off = PinRetention(MemoryContentStore(), tmp_path / "off.json", 0, fetch=fetch)
    assert not off.keep("bafkreib")
    assert off.holds == {}
    (tmp_path / "old.json").write_text('{"bafkreia": 5.0}')  # what a provider wrote before
    old = PinRetention(MemoryContentStore(), tmp_path / "old.json", 60)
    assert old.holds == {"bafkreia": 5.0} and old.pending == set()


async def test_a_kept_cid_too_large_to_pin_is_dropped_not_retried(tmp_path: Path) -> None:
    store = MemoryContentStore()
    big = await store.add_bytes(b"x" * 5000, pin=False)
    small = await store.add_bytes(b"a small result", pin=False)
    scratch = tmp_path / "scratch"

    async def fetch(wanted: str) -> None:
        await pin_verified(store, wanted, scratch, 1000)

    kept = PinRetention(store, tmp_path / "pins.json", 3600, fetch=fetch)
    assert kept.keep(big) and kept.keep(small)
    assert await kept.pin_pending() == [small]
    assert kept.pending == set() and kept.holds.keys() == {small}  # big: dropped for good
    assert store.pins == {store._key(small)}
    assert list(scratch.iterdir()) == []  # no copy left behind either way
