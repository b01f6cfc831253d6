"""A provider states its input limit (``PROVIDER_MAX_INPUT_BYTES``) in its adverts, and the
size a coordinator reads from an input's CID is the figure the provider holds to that limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.errors import ContentError
from protocol.identity import Identity
from protocol.ipfs import MemoryContentStore
from protocol.messages.advert import MAX_INPUT_LIMIT
from protocol.p2p.host import Node, open_host
from protocol.p2p.testing import dev_private_key
from provider_node.advertiser import Advertiser
from provider_node.settings import ProviderSettings
from provider_node.workdir import fetch_inputs
from tests.provider_node.factories import cpu_advertiser

pytestmark = pytest.mark.timeout(60)

KEY = dev_private_key(1, "input-limit")
IDENTITY = Identity.from_private_key(KEY)


def advertiser(node: Node, tmp_path: Path, max_input_bytes: int | None) -> Advertiser:
    return cpu_advertiser(node, IDENTITY, tmp_path, max_input_bytes=max_input_bytes)


async def test_the_advert_carries_the_providers_input_limit(tmp_path: Path) -> None:
    assert ProviderSettings.model_fields["max_input_bytes"].default == 1 << 30
    async with open_host(KEY) as node:
        assert advertiser(node, tmp_path, 3 << 30).build().max_input_bytes == 3 << 30
        assert advertiser(node, tmp_path, None).build().max_input_bytes is None
        # A provider taking more than an advert can state says the most it can.
        huge = advertiser(node, tmp_path, MAX_INPUT_LIMIT * 4).build()
        assert huge.max_input_bytes == MAX_INPUT_LIMIT


async def test_the_size_read_from_a_cid_is_what_the_provider_counts(tmp_path: Path) -> None:
    """A file's size from its root block (what the coordinator matches on) is exactly what
    the provider's fetch holds to its limit: one byte less refuses it."""
    data = bytes(range(256)) * 5000 + b"tail"  # several blocks
    async with MemoryContentStore() as store:
        cid = await store.add_bytes(data)
        size = await store.size(cid)
        assert size == len(data)
        await fetch_inputs(store, {"data": cid}, tmp_path / "fits", size)
        with pytest.raises(ContentError):
            await fetch_inputs(store, {"data": cid}, tmp_path / "refused", size - 1)
