"""SIGKILL of a ``coordinator run`` process mid-job: the restarted process finishes the job
exactly once (one assign per provider, one settlement), from its store and the chain."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import trio

from devnet.anvil import AnvilNode
from devnet.ipfs import IpfsNode
from devnet.scripted_provider import FakeProvider, run_provider
from protocol.errors import TransportError
from protocol.identity import import_private_key
from protocol.ipfs import KuboContentStore
from tests.coordinator.market import Market, deploy_market

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def coordinator_env(market: Market, tmp: Path, p2p_port: int) -> dict[str, str]:
    keystore = tmp / "coordinator.keystore.json"
    if not keystore.exists():
        import_private_key(keystore, market.coordinator.private_key, "pw", scrypt_n=2**4)
        (tmp / "password").write_text("pw\n")
    env = dict(os.environ)
    env.update(
        {
            "COORDINATOR_RPC_URL": market.anvil.rpc_url,
            "COORDINATOR_MARKET_ADDRESS": market.deployment.market,
            "COORDINATOR_REGISTRY_ADDRESS": market.deployment.registry,
            "COORDINATOR_TOKEN_ADDRESS": market.deployment.token,
            "COORDINATOR_KEYSTORE": str(keystore),
            "COORDINATOR_PASSWORD_FILE": str(tmp / "password"),
            "COORDINATOR_IPFS_API": "http://127.0.0.1:9",
            "COORDINATOR_DATA_DIR": str(tmp / "data"),
            "COORDINATOR_P2P_PORT": str(p2p_port),
            "COORDINATOR_REORG_MARGIN": "0",
            "COORDINATOR_CHALLENGES": "false",
            "COORDINATOR_POLL_INTERVAL_S": "0.2",
            "COORDINATOR_STAKE_REFRESH_S": "0.5",
            "COORDINATOR_EXPLORATION_SHARE": "0",
        }
    )
    return env


async def start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    ready = Path(env["COORDINATOR_DATA_DIR"]) / "coordinator.json"
    ready.unlink(missing_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coordinator", "run", "--log-level", "info"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
    with trio.fail_after(60):
        while not ready.exists():
            assert proc.poll() is None, log.read_text()[-3000:]
            await trio.sleep(0.1)
    return proc, json.loads(ready.read_text())


async def redial(fake: FakeProvider, addr: str) -> None:
    """Dial until libp2p's negative cache of the dead address has expired."""
    assert fake.node is not None
    with trio.fail_after(60):
        while True:
            try:
                await fake.node.connect(addr)
                return
            except TransportError:
                await trio.sleep(0.5)


async def test_sigkill_mid_job_then_restart_settles_exactly_once(
    chain: AnvilNode, ipfs: IpfsNode, tmp_path: Path
) -> None:
    market = deploy_market(chain, providers=2)
    market.content = KuboContentStore(ipfs.api_url)  # the coordinator process reads specs there
    env = coordinator_env(market, tmp_path, free_port())
    env["COORDINATOR_IPFS_API"] = ipfs.api_url
    log = tmp_path / "coordinator.log"
    proc, info = await start(env, log)
    try:
        async with AsyncExitStack() as stack:
            fakes = [
                await stack.enter_async_context(
                    run_provider(
                        FakeProvider(p, market.domain, chain=market.client(p), result=b"same"),
                        info["multiaddr"],
                    )
                )
                for p in market.providers
            ]
            job_id = await market.create_job(redundancy=2)
            with trio.fail_after(60):
                while sum(len(f.assignments) for f in fakes) < 2:
                    await trio.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc, info = await start(env, log)
            for f in fakes:
                await redial(f, info["multiaddr"])
            key = "0x" + job_id.hex()
            async with httpx.AsyncClient(base_url=info["http_url"], timeout=10) as http:
                with trio.fail_after(120):
                    while (view := (await http.get(f"/jobs/{key}")).json())["state"] not in (
                        "settled",
                        "failed",
                    ):
                        await trio.sleep(0.3)
            assert view["state"] == "settled", (view, log.read_text()[-3000:])
            client = market.client(market.requester)
            events = await trio.to_thread.run_sync(
                lambda: client.get_events(0, client.block_number())
            )
            assert len([e for e in events if e.name == "JobSettled"]) == 1
            assert len([e for e in events if e.name == "ProviderAssigned"]) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        await market.content.aclose()
    assert proc.returncode == 0, log.read_text()[-3000:]
