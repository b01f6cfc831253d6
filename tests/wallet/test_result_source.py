"""`job result`'s download: where the result came from, the coordinator's node keeping it after
the providers dropped it, and a clear error when nobody has it."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import httpx
import pytest

from devnet.ipfs import IpfsNode, start_ipfs
from protocol.errors import GpuMarketError
from protocol.ids import Cid, JobId
from protocol.ipfs import KuboContentStore, hash_bytes
from protocol.ipfs.retention import PinRetention, pin_verified
from protocol.views import Health
from wallet import records
from wallet.jobs import download_result, release_uploads, with_result_holders
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
async def test_uploads_are_released_when_the_job_ends(
    ipfs: IpfsNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWLs7kHicH7r3R94garGeMJvNxiFb8ytYxRcnEP4BgxcB4"
    settings = WalletSettings(
        ipfs_api=ipfs.api_url, ipfs_peers=(peer,), keystore_dir=tmp_path / "keystores"
    )
    dialled: list[tuple[str, ...]] = []

    async def connect_peers(store: KuboContentStore) -> dict[str, str]:
        dialled.append(store.peers)
        return {}

    monkeypatch.setattr(KuboContentStore, "connect_peers", connect_peers)
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
    # Unpinning concerns the wallet's own node: no peer is dialled for it.
    assert all(peers == () for peers in dialled), dialled


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _collect_garbage(node: IpfsNode) -> None:
    """Drop every unpinned block from ``node`` (``repo/gc``), as its own GC eventually would."""
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", f"{node.api_url}/api/v0/repo/gc") as resp:
            assert resp.status_code == 200
            for _ in resp.iter_bytes():
                pass


@pytest.mark.timeout(240)
async def test_result_outlives_its_providers_at_the_coordinators_node(tmp_path: Path) -> None:
    """A provider reveals (adds) a result, the coordinator's node keeps it (fetched from the
    provider's node, verified, pinned), the provider's node goes away: `job result` still
    gets it, from the coordinator's node. Once the coordinator's retention ends too, nobody
    has it and the error names the CID and every node asked."""
    provider = start_ipfs(tmp_path / "provider-node", name="provider ipfs")
    nodes = [provider]
    try:
        coordinator = start_ipfs(tmp_path / "coordinator-node", name="coordinator ipfs")
        nodes.append(coordinator)
        requester = start_ipfs(tmp_path / "requester-node", name="requester ipfs")
        nodes.append(requester)

        outputs = tmp_path / "outputs"
        (outputs / "sub").mkdir(parents=True)
        (outputs / "model.bin").write_bytes(noise(700_000, 5))  # three chunks
        (outputs / "sub" / "metrics.json").write_bytes(b'{"loss": 0.25}')
        async with KuboContentStore(provider.api_url) as store:
            cid = await store.add_directory(outputs)

        clock = Clock()
        pins = tmp_path / "coordinator" / "result-pins.json"
        async with KuboContentStore(coordinator.api_url, peers=[provider.swarm_addr]) as store:

            async def fetch(wanted: str) -> None:
                await pin_verified(store, wanted, tmp_path / "coordinator" / "scratch", 1 << 20)

            kept = PinRetention(store, pins, 3600, fetch=fetch, clock=clock)
            assert kept.keep(cid)
            assert await kept.pin_pending() == [cid]
            assert cid in await store.pins()
            assert list((tmp_path / "coordinator" / "scratch").iterdir()) == []

        provider.stop()  # every provider's copy is gone with its node
        # The wallet knows the provider's node; the coordinator's comes from its /health.
        plain = WalletSettings(
            ipfs_api=requester.api_url, ipfs_peers=(provider.swarm_addr,), ipfs_timeout_s=5.0
        )
        health = Health(
            ok=True,
            chain_block=1,
            providers=1,
            ipfs_peers=[coordinator.swarm_addr],
            result_retention_s=3600.0,
        )
        settings = with_result_holders(plain, health)
        assert settings.ipfs_peers == (provider.swarm_addr, coordinator.swarm_addr)
        fetched = await download_result(settings, cid, tmp_path / "result")
        assert (fetched.path / "model.bin").read_bytes() == noise(700_000, 5)
        assert (fetched.path / "sub" / "metrics.json").read_bytes() == b'{"loss": 0.25}'
        assert fetched.source == requester.api_url  # its node fetched it from the coordinator's

        # A restarted coordinator still knows what to release, and when.
        clock.now += 3601
        async with KuboContentStore(coordinator.api_url) as store:
            restarted = PinRetention(store, pins, 3600, clock=clock)
            assert restarted.holds.keys() == {cid}
            assert await restarted.sweep() == [cid]
            assert cid not in await store.pins()
        _collect_garbage(coordinator)
        _collect_garbage(requester)
        with pytest.raises(GpuMarketError) as caught:
            await download_result(settings, cid, tmp_path / "again")
        message = str(caught.value)
        assert f"result {cid} could not be fetched" in message
        assert requester.api_url in message and coordinator.swarm_addr in message
        assert not (tmp_path / "again").exists()
    finally:
        for node in reversed(nodes):
            node.stop()


@pytest.mark.timeout(120)
async def test_result_is_pinned_at_the_node_the_requester_names(
    ipfs: IpfsNode, tmp_path: Path
) -> None:
    pinning = start_ipfs(tmp_path / "pinning-node", name="pinning ipfs")
    try:
        result = tmp_path / "outputs"
        result.mkdir()
        (result / "weights.bin").write_bytes(noise(400_000, 6))
        async with KuboContentStore(ipfs.api_url) as store:
            cid = await store.add_directory(result)
        async with KuboContentStore(pinning.api_url) as node:
            assert cid not in await node.pins()
        settings = WalletSettings(ipfs_api=ipfs.api_url, pin_to=pinning.api_url + "/")
        fetched = await download_result(settings, cid, tmp_path / "got")
        assert fetched.pinned_at == pinning.api_url
        assert (fetched.path / "weights.bin").read_bytes() == noise(400_000, 6)
        # The pinning node holds it itself: no peers to fetch from, and pinned.
        async with KuboContentStore(pinning.api_url, timeout=5) as node:
            assert cid in await node.pins()
            copy = await node.get(cid, tmp_path / "from-pinning-node")
        assert (copy / "weights.bin").read_bytes() == noise(400_000, 6)

        # A pinning node that does not answer: the verified result stays, the error says where.
        closed = _closed_port_url()
        unreachable = WalletSettings(ipfs_api=ipfs.api_url, pin_to=closed, ipfs_timeout_s=3)
        with pytest.raises(GpuMarketError) as caught:
            await download_result(unreachable, cid, tmp_path / "kept")
        assert f"pinning the result {cid} at {closed} failed" in str(caught.value)
        assert "verified and written to" in str(caught.value)
        assert (tmp_path / "kept" / "weights.bin").read_bytes() == noise(400_000, 6)
    finally:
        pinning.stop()


def test_a_pinning_node_must_be_an_http_url() -> None:
    with pytest.raises(ValueError, match="must be the http\\(s\\) URL of a Kubo RPC API"):
        WalletSettings(pin_to="127.0.0.1:5001")


def test_the_coordinators_node_is_added_only_when_it_keeps_results() -> None:
    peer = "/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWJCcwLdLaQPbaDSmQjvXKVrFXnsKkujKUn1kikEpCNTqw"
    own = "/ip4/127.0.0.1/tcp/4003/p2p/12D3KooWJCcwLdLaQPbaDSmQjvXKVrFXnsKkujKUn1kikEpCNTqw"
    settings = WalletSettings(ipfs_api="http://127.0.0.1:5001", ipfs_peers=(own,))
    kept = Health(
        ok=True, chain_block=1, providers=1, ipfs_peers=[peer, own], result_retention_s=600.0
    )
    assert with_result_holders(settings, kept).ipfs_peers == (own, peer)  # once each
    stopped = kept.model_copy(update={"result_retention_s": 0.0})
    assert with_result_holders(settings, stopped) == settings
    older = Health.model_validate({"ok": True, "chain_block": 1, "providers": 1})
    assert with_result_holders(settings, older) == settings  # an older coordinator says nothing
    assert with_result_holders(settings, None) == settings  # no /health answer at all
    bad = kept.model_copy(update={"ipfs_peers": ["not a multiaddr"]})
    assert with_result_holders(settings, bad) == settings
