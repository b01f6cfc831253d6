"""`job result`'s download: where the result came from, and a clear error when nobody has it."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from devnet.ipfs import IpfsNode
from protocol.errors import GpuMarketError
from protocol.ids import Cid, JobId
from protocol.ipfs import KuboContentStore, hash_bytes
from wallet import records
from wallet.jobs import download_result, release_uploads
from wallet.settings import WalletSettings

pytestmark = pytest.mark.integration


def noise(size: int, seed: int) -> bytes:
    return hashlib.shake_256(f"result:{seed}:{size}".encode()).digest(size)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.timeout(60)
async def test_result_says_where_it_was_found(ipfs: IpfsNode, tmp_path: Path) -> None:
    data = noise(300_000, 1)
    async with KuboContentStore(ipfs.api_url) as store:
        cid = await store.add_bytes(data)
    plain = WalletSettings(ipfs_api=ipfs.api_url)
    fetched = await download_result(plain, cid, tmp_path / "a")
    assert fetched.path.read_bytes() == data
    assert fetched.source == ipfs.api_url
    direct = WalletSettings(ipfs_api=ipfs.api_url, ipfs_gateways=(ipfs.gateway_url,))
    fetched = await download_result(direct, cid, tmp_path / "b")
    assert fetched.path.read_bytes() == data
    assert fetched.source == ipfs.gateway_url


@pytest.mark.timeout(60)
async def test_result_nobody_has_names_the_cid_and_who_was_asked(
    ipfs: IpfsNode, tmp_path: Path
) -> None:
    absent = Cid(hash_bytes(noise(300_000, 2)).text)  # never added anywhere
    gateway = _closed_port_url()
    settings = WalletSettings(ipfs_api=ipfs.api_url, ipfs_gateways=(gateway,), ipfs_timeout_s=3.0)
    with pytest.raises(GpuMarketError) as caught:
        await download_result(settings, absent, tmp_path / "out")
    message = str(caught.value)
    assert f"result {absent} could not be fetched" in message
    assert ipfs.api_url in message and gateway in message
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(60)
async def test_uploads_are_released_when_the_job_ends(ipfs: IpfsNode, tmp_path: Path) -> None:
    settings = WalletSettings(ipfs_api=ipfs.api_url, keystore_dir=tmp_path / "keystores")
    async with KuboContentStore(ipfs.api_url) as store:
        shared = await store.add_bytes(noise(1000, 3))  # both jobs' input
        own = await store.add_bytes(noise(1000, 4))  # the first job's spec
    first, second = JobId(b"\x01" * 32), JobId(b"\x02" * 32)
    records.update(settings, first, pinned=[own, shared])
    records.update(settings, second, pinned=[shared])

    assert await release_uploads(settings, first) == [own]
    async with KuboContentStore(ipfs.api_url) as store:
        pins = await store.pins()
    assert own not in pins and shared in pins  # the second job still needs it
    assert "released_at" in records.read(settings, first)
    assert await release_uploads(settings, first) == []  # once only

    assert await release_uploads(settings, second) == [shared]
    async with KuboContentStore(ipfs.api_url) as store:
        assert shared not in await store.pins()
