"""`job submit` and `job cancel` against a real Anvil and IPFS, with a stub coordinator."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import trio
from eth_account import Account

from contracts.chain import Web3Chain
from contracts.deploy import deploy_all, fund_accounts
from contracts.models import Deployment, JobStatus
from devnet.anvil import AnvilNode
from devnet.ipfs import IpfsNode
from protocol.errors import SpecError
from protocol.identity import Identity
from protocol.ids import to_wei
from protocol.ipfs import KuboContentStore
from protocol.spec_io import spec_from_canonical
from wallet import jobs
from wallet.coordinator import CoordinatorError
from wallet.settings import WalletSettings

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class StubCoordinator(BaseHTTPRequestHandler):
    notified: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self._reply(200, {"ok": True, "chain_block": 0, "providers": 0})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.notified.append(body["job_id"])
        self._reply(202, {"job_id": body["job_id"], "state": "created"})

    def _reply(self, status: int, data: dict[str, object]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture
def coordinator_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubCoordinator)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def market(chain: AnvilNode, ipfs: IpfsNode, coordinator_url: str) -> WalletSettings:
    deployer = chain.accounts[0].private_key
    addresses = deploy_all(chain.rpc_url, deployer)
    fund_accounts(
        chain.rpc_url, deployer, addresses["token"], [chain.accounts[5].address], to_wei("100")
    )
    return WalletSettings(
        rpc_url=chain.rpc_url,
        chain_id=chain.chain_id,
        ipfs_api=ipfs.api_url,
        coordinator_url=coordinator_url,
        coordinator_address=chain.accounts[1].address,
        token_address=addresses["token"],
        registry_address=addresses["registry"],
        market_address=addresses["market"],
    )


def requester(chain: AnvilNode) -> Identity:
    return Identity.from_private_key(chain.accounts[5].private_key)


def test_submit_uploads_escrows_in_one_tx_and_notifies(
    chain: AnvilNode, market: WalletSettings
) -> None:
    who = requester(chain)
    client = jobs.chain_for(market, who)
    before = client.token_balance(who.address)
    seen: list[tuple[str, int, int]] = []
    submitted = jobs.submit(
        market, who, EXAMPLES / "matmul" / "job.yaml", progress=lambda *a: seen.append(a)
    )
    assert StubCoordinator.notified[-1] == "0x" + submitted.job_id.hex()
    info = client.get_job(submitted.job_id)
    assert info.status == JobStatus.OPEN and info.terms.redundancy == 2
    assert submitted.escrow == 3 * to_wei("2.50") + to_wei("0.10") == info.escrow
    assert client.token_balance(who.address) == before - submitted.escrow
    assert seen and seen[-1][1] == seen[-1][2] > 0

    async def read_spec() -> bytes:
        async with KuboContentStore(market.need("ipfs_api")) as store:
            return await store.read_bytes(submitted.spec_cid)

    spec = spec_from_canonical(trio.run(read_spec))
    assert spec.is_resolved and spec.input_cids() == submitted.input_cids

    # Cancel before assignment: the escrow is credited back to the requester.
    assert jobs.cancel_or_reclaim(market, who, submitted.job_id) == "cancelled"
    assert client.get_job(submitted.job_id).status == JobStatus.CANCELLED
    assert client.account_info(who.address).owed == submitted.escrow


def test_insufficient_balance_says_how_much_is_missing(
    chain: AnvilNode, market: WalletSettings
) -> None:
    poor = Identity.from_private_key(bytes(Account.create().key))
    with pytest.raises(jobs.InsufficientFunds, match=r"holds 0 tokens .* 7.6 missing"):
        jobs.submit(market, poor, EXAMPLES / "matmul" / "job.yaml")


def test_unreachable_coordinator_is_named_and_nothing_is_paid(
    chain: AnvilNode, market: WalletSettings
) -> None:
    who = requester(chain)
    dead = market.model_copy(update={"coordinator_url": "http://127.0.0.1:9"})
    deployment = Deployment.from_addresses(
        chain.chain_id,
        {
            "token": market.need("token_address"),
            "registry": market.need("registry_address"),
            "market": market.need("market_address"),
        },
    )
    client = Web3Chain(chain.rpc_url, deployment, chain.accounts[5].private_key)
    before = client.token_balance(who.address)
    with pytest.raises(CoordinatorError, match=r"coordinator at http://127.0.0.1:9: unreachable"):
        jobs.submit(dead, who, EXAMPLES / "matmul" / "job.yaml")
    assert client.token_balance(who.address) == before


def test_bad_spec_is_refused_before_anything_happens(
    tmp_path: Path, chain: AnvilNode, market: WalletSettings
) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(
        (EXAMPLES / "matmul" / "job.yaml").read_text().replace("resources:", "resorces:")
    )
    with pytest.raises(SpecError, match="did you mean 'resources'"):
        jobs.submit(market, requester(chain), spec)
    spec.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="malformed YAML at line 2"):
        jobs.submit(market, requester(chain), spec)
