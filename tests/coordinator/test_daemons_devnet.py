"""The coordinator with real provider daemons: Anvil, IPFS, libp2p, bwrap sandboxes.

Two provider daemons (``provider_node.daemon.ProviderNode``) stake, advertise and answer the
coordinator's benchmark challenges; a redundancy-2 job runs in both sandboxes, both commit
to the same outputs, reveal them into IPFS, and the coordinator settles and pays both.
"""

from __future__ import annotations

import json
import textwrap
from contextlib import AsyncExitStack
from decimal import Decimal
from pathlib import Path

import httpx
import numpy as np
import pytest
import trio

from contracts.models import JobStatus
from coordinator.matching.columns import DTYPE_INDEX
from coordinator.service import Coordinator
from devnet.anvil import AnvilNode
from devnet.ipfs import IpfsNode
from protocol.identity import import_private_key
from protocol.ipfs import KuboContentStore
from protocol.ipfs.local import path_ref
from provider_node.benchmark import BenchmarkSettings, run_benchmark
from provider_node.daemon import ProviderNode
from provider_node.profile import offer_from_benchmark
from provider_node.settings import ProviderSettings
from tests.coordinator.market import Market, deploy_market

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

PASSWORD = "devnet-password"
JOB = """
import json, os, pathlib
import torch
torch.manual_seed(int(os.environ["GPUMARKET_SEED"]) % 2**31)
a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
b = torch.arange(8, dtype=torch.float32).reshape(4, 2) - 3
out = pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"])
(out / "product.json").write_text(json.dumps((a @ b).tolist()))
print("product written")
"""


def expected_cid(tmp: Path) -> str:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.arange(8, dtype=np.float32).reshape(4, 2) - 3
    out = tmp / "expected"
    out.mkdir()
    (out / "product.json").write_text(json.dumps((a @ b).tolist()))
    return path_ref(out).text


def provider_settings(
    market: Market, ipfs: IpfsNode, tmp: Path, i: int, coordinator: str
) -> ProviderSettings:
    who = market.providers[i]
    keystore = tmp / f"provider{i}.keystore.json"
    import_private_key(keystore, who.private_key, PASSWORD, scrypt_n=2**4)
    password = tmp / "password"
    password.write_text(PASSWORD + "\n")
    return ProviderSettings(
        rpc_url=market.anvil.rpc_url,
        market_address=market.deployment.market,
        registry_address=market.deployment.registry,
        token_address=market.deployment.token,
        keystore=keystore,
        password_file=password,
        ipfs_api=ipfs.api_url,
        coordinator_multiaddr=coordinator,
        work_dir=tmp / f"provider{i}",
        runtime="bwrap",
        stake=Decimal("100"),
        cpu_only=True,
        advert_period_s=1.0,
        shutdown_grace_s=2.0,
    )


async def test_redundancy_two_job_on_real_provider_daemons(
    chain: AnvilNode, ipfs: IpfsNode, tmp_path: Path
) -> None:
    market = deploy_market(chain, providers=2, register=False)
    offer = offer_from_benchmark(
        run_benchmark(settings=BenchmarkSettings.tiny(), cache_dir=tmp_path / "bench").result,
        cpu_only=True,
    )
    settings = market.settings(
        tmp_path / "coordinator", ipfs_api=ipfs.api_url, challenges=True, challenge_n=64
    )
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(KuboContentStore(ipfs.api_url))
        coord = await stack.enter_async_context(Coordinator(settings))
        for i in range(2):
            ps = provider_settings(market, ipfs, tmp_path, i, coord.multiaddr)
            await stack.enter_async_context(ProviderNode(ps, offer=offer))
        with trio.fail_after(60):
            while sum(1 for e in coord.book.entries.values() if e.registered) < 2:
                await trio.sleep(0.2)
            while len(coord.challenger.results) < 2:
                await trio.sleep(0.2)
        # Each provider was challenged on every dtype it claims; a pass keeps the claimed
        # figure, a failure (a loaded test host can miss the time bound) zeroes it.
        for address, passed in coord.challenger.results.items():
            slot = coord.book.columns.slot(address)
            assert slot is not None
            claimed = {d: v for d, v in offer.benchmark.tflops.items() if v > 0}
            outcomes = {
                d: ok for (a, d), ok in coord.challenger.dtype_results.items() if a == address
            }
            assert set(outcomes) == set(claimed) and passed == all(outcomes.values())
            for dtype, ok in outcomes.items():
                i = DTYPE_INDEX[dtype]
                assert coord.book.columns.measured[slot, i]
                got = float(coord.book.columns.tflops[slot, i])
                assert got == (pytest.approx(claimed[dtype]) if ok else 0.0)

        code = tmp_path / "code"
        code.mkdir()
        (code / "main.py").write_text(textwrap.dedent(JOB))
        code_cid = await store.add_directory(code)
        spec = (
            "name: product\nruntime: {kind: torch, entrypoint: main.py}\n"
            f"inputs: [{{name: code, cid: {code_cid}}}]\n"
            "resources: {gpus: 0}\nverification: {redundancy: 2, compare: exact}\n"
            'price: {max_per_provider: "2.50"}\ntimeout: 120s\nmax_output: 1MiB\n'
        )
        spec_cid = await store.add_bytes(spec.encode())
        client = market.client(market.requester)

        def create() -> bytes:
            request = market.request(spec_cid, client.now(), 2, commit_window=180)
            job_id, _ = client.create_job(request)
            return job_id

        job_id = await trio.to_thread.run_sync(create)
        key = "0x" + job_id.hex()
        async with httpx.AsyncClient(base_url=coord.http_url, timeout=10) as http:
            assert (await http.post("/jobs", json={"job_id": key})).status_code == 202
            with trio.fail_after(240):
                while (view := (await http.get(f"/jobs/{key}")).json())["state"] not in (
                    "settled",
                    "failed",
                ):
                    await trio.sleep(0.5)
        assert view["state"] == "settled", view
        assert view["result_cid"] == expected_cid(tmp_path)
        assert [p["outcome"] for p in view["providers"]] == ["paid", "paid"]
        assert await trio.to_thread.run_sync(client.job_status, job_id) == (JobStatus.SETTLED, 2)
        fetched = await store.get(view["result_cid"], tmp_path / "fetched")
        product = np.arange(12, dtype=np.float32).reshape(3, 4) @ (
            np.arange(8, dtype=np.float32).reshape(4, 2) - 3
        )
        assert json.loads((fetched / "product.json").read_text()) == product.tolist()
        # The coordinator's node fetched the result, verified it and holds it pinned.
        results = coord.results
        assert results is not None
        with trio.fail_after(60):
            while view["result_cid"] not in results.holds or results.pending:
                await trio.sleep(0.2)
        assert view["result_cid"] in await store.pins()
        assert list((tmp_path / "coordinator" / "result-fetch").iterdir()) == []
        # Wallets learn where: its node's own swarm address, and for how long.
        async with httpx.AsyncClient(base_url=coord.http_url, timeout=10) as http:
            health = (await http.get("/health")).json()
        own = (await store.node_id())["ID"]
        assert health["ipfs_peers"] and all(a.endswith(f"/p2p/{own}") for a in health["ipfs_peers"])
        assert health["result_retention_s"] == 7 * 24 * 3600
