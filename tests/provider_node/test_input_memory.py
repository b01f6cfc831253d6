"""A large input reaches the provider's work directory through the production path
(:func:`provider_node.workdir.fetch_inputs` over a real IPFS daemon, with the input cache)
while holding a bounded amount of memory: every piece is written as it arrives, never
gathered. The bound is on Python's own allocations (tracemalloc's peak), which is what a
buffering mistake would grow; the file is several times larger than the bound."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from devnet.ipfs import IpfsNode
from protocol.ipfs import KuboContentStore
from provider_node.inputcache import InputCache
from provider_node.workdir import fetch_inputs

pytestmark = pytest.mark.timeout(180)

SIZE = 64 << 20
PIECE = 1 << 20
PEAK_BOUND = 16 << 20
"""Several 1 MiB socket reads in flight, the DAG's links and the clients: far below SIZE."""


def _noise(path: Path) -> str:
    """Write SIZE pseudo-random bytes to ``path`` a piece at a time; returns their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for i in range(SIZE // PIECE):
            piece = hashlib.shake_256(f"input-memory:{i}".encode()).digest(PIECE)
            digest.update(piece)
            handle.write(piece)
    return digest.hexdigest()


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def _peak_since_reset() -> int:
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    return peak


@pytest.mark.parametrize("through", ["gateway", "daemon"])
async def test_a_large_input_is_fetched_and_cached_in_bounded_memory(
    ipfs: IpfsNode, tmp_path: Path, through: str, traced: None
) -> None:
    source = tmp_path / "big.bin"
    expected = _noise(source)
    async with KuboContentStore(ipfs.api_url) as adder:
        cid = await adder.add_file(source)
    gateways = [ipfs.gateway_url] if through == "gateway" else []
    cache = InputCache(tmp_path / "cache", 2 * SIZE)
    async with KuboContentStore(ipfs.api_url, gateways=gateways) as store:
        _peak_since_reset()
        await fetch_inputs(store, {"data": cid}, tmp_path / "one", 2 * SIZE, cache=cache)
        fetched_peak = _peak_since_reset()
        await fetch_inputs(store, {"data": cid}, tmp_path / "two", 2 * SIZE, cache=cache)
        cached_peak = _peak_since_reset()
        assert store.last_source == (ipfs.gateway_url if gateways else ipfs.api_url)
    assert cache.stats.hits == 1  # the second job took it from the cache
    for run in ("one", "two"):
        with open(tmp_path / run / "inputs" / "data" / "data", "rb") as placed:
            assert hashlib.file_digest(placed, "sha256").hexdigest() == expected
    assert fetched_peak < PEAK_BOUND, f"fetch held {fetched_peak / 1e6:.1f} MB at once"
    assert cached_peak < PEAK_BOUND, f"cache held {cached_peak / 1e6:.1f} MB at once"
