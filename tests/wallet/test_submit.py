"""`job submit` and `job cancel` against a real Anvil and IPFS, with a stub coordinator
(the chain's coordinator account is bonded; providers act through the real bindings)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio
from eth_account import Account

from contracts.chain import Web3Chain
from contracts.deploy import DEFAULT_MIN_COORDINATOR_BOND, deploy_all, fund_accounts
from contracts.models import AcceptedSeat, Deployment, JobStatus
from devnet.anvil import AnvilNode
from devnet.ipfs import IpfsNode, start_ipfs
from protocol.eip712 import Signature, commit_hash, sign_accept
from protocol.errors import GpuMarketError, SpecError
from protocol.identity import Identity
from protocol.ids import JobId, to_wei
from protocol.ipfs import KuboContentStore
from protocol.spec_io import spec_from_canonical
from tests.wallet.stub import serving
from tests.wallet.views import quote_json
from wallet import jobs, records
from wallet.coordinator import CoordinatorRequestError
from wallet.settings import WalletSettings
from wallet.windows import ASSIGN_WINDOW_S, job_windows

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class StubCoordinator(BaseHTTPRequestHandler):
    notified: ClassVar[list[str]] = []
    quoted: ClassVar[list[dict[str, Any]]] = []
    """Bodies of ``POST /quote``."""
    quote: ClassVar[dict[str, Any]] = {"capable": 1, "providers_in_book": 1}
    metrics: ClassVar[str | None] = None
    """The body of ``GET /metrics`` (None: answered like every other GET)."""

    def do_GET(self) -> None:
        if self.path == "/metrics" and self.metrics is not None:
            raw = self.metrics.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return
        self._reply(200, {"ok": True, "chain_block": 0, "providers": 0})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/quote":  # a whole quote with the test's figures
            self.quoted.append(body)
            self._reply(200, quote_json([], **self.quote))
            return
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
    with serving(StubCoordinator) as url:
        yield url


COORDINATOR, REQUESTER, PROVIDERS = 1, 5, (2, 3)


@pytest.fixture
def market(chain: AnvilNode, ipfs: IpfsNode, coordinator_url: str) -> WalletSettings:
    deployer = chain.accounts[0].private_key
    addresses = deploy_all(chain.rpc_url, deployer)
    funded = [chain.accounts[i].address for i in (COORDINATOR, REQUESTER, *PROVIDERS)]
    fund_accounts(chain.rpc_url, deployer, addresses["token"], funded, to_wei("1000"))
    settings = WalletSettings(
        rpc_url=chain.rpc_url,
        chain_id=chain.chain_id,
        ipfs_api=ipfs.api_url,
        coordinator_url=coordinator_url,
        coordinator_address=chain.accounts[COORDINATOR].address,
        token_address=addresses["token"],
        registry_address=addresses["registry"],
        market_address=addresses["market"],
    )
    act(chain, settings, COORDINATOR).bond_coordinator(DEFAULT_MIN_COORDINATOR_BOND)
    return settings


def act(chain: AnvilNode, settings: WalletSettings, index: int) -> Web3Chain:
    return Web3Chain(chain.rpc_url, settings.deployment(), chain.accounts[index].private_key)


def requester(chain: AnvilNode) -> Identity:
    return Identity.from_private_key(chain.accounts[REQUESTER].private_key)


def advance_past(chain: AnvilNode, client: Web3Chain, timestamp: int) -> None:
    chain.rpc("evm_increaseTime", [timestamp + 1 - client.now()])
    chain.rpc("evm_mine")


def seat_providers(chain: AnvilNode, settings: WalletSettings, job_id: JobId) -> list[Web3Chain]:
    """Both providers register (distinct groups), stake and accept; the coordinator assigns."""
    coordinator = act(chain, settings, COORDINATOR)
    terms_hash = coordinator.job_terms(job_id).terms_hash()
    expiry = coordinator.now() + 600
    providers, offers = [], []
    for seat, index in enumerate(PROVIDERS):
        provider = act(chain, settings, index)
        provider.register(seat + 1)
        provider.stake(to_wei("100"))
        price, rate = to_wei("2.00"), to_wei("6.00")
        sig = sign_accept(
            provider.account,
            settings.deployment().domain,
            job_id,
            provider.address,
            seat,
            price,
            rate,
            terms_hash,
            expiry,
        )
        offers.append(
            AcceptedSeat(provider.address, price, rate, expiry, Signature.from_bytes(sig))
        )
        providers.append(provider)
    coordinator.assign(job_id, offers)
    return providers


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
    # Four seats (two primaries, a spot-checker, a tie-breaker) and the fee.
    assert submitted.escrow == 4 * to_wei("2.50") + to_wei("0.10") == info.escrow
    assert client.token_balance(who.address) == before - submitted.escrow
    assert seen and seen[-1][1] == seen[-1][2] > 0
    # The terms carry the wallet's windows for the spec's 2-minute timeout.
    terms = info.terms
    expected = job_windows(terms.assign_deadline - ASSIGN_WINDOW_S, 120, 2)
    assert (
        terms.timeout_ms,
        terms.commit_window,
        terms.reveal_window,
        terms.spare_deadline,
        terms.settle_deadline,
    ) == (
        expected.timeout_ms,
        expected.commit_window,
        expected.reveal_window,
        expected.spare_deadline,
        expected.settle_deadline,
    )

    async def read_spec() -> bytes:
        async with KuboContentStore(market.need("ipfs_api")) as store:
            return await store.read_bytes(submitted.spec_cid)

    spec = spec_from_canonical(trio.run(read_spec))
    assert spec.is_resolved and spec.input_cids() == submitted.input_cids

    # Cancel before any seat: the escrow is credited back to the requester.
    assert jobs.cancel_or_reclaim(market, who, submitted.job_id) == "cancelled"
    assert client.get_job(submitted.job_id).status == JobStatus.CANCELLED
    assert client.account_info(who.address).owed == submitted.escrow


def test_an_aborted_job_needs_nothing(chain: AnvilNode, market: WalletSettings) -> None:
    who = requester(chain)
    submitted = jobs.submit(market, who, EXAMPLES / "matmul" / "job.yaml")
    act(chain, market, COORDINATOR).abort(submitted.job_id)
    client = jobs.chain_for(market, who)
    assert jobs.cancel_or_reclaim(market, who, submitted.job_id) == "aborted"
    assert client.get_job(submitted.job_id).status == JobStatus.ABORTED
    assert client.account_info(who.address).owed == submitted.escrow


def test_reclaim_waits_for_the_settle_deadline_then_refunds(
    chain: AnvilNode, market: WalletSettings
) -> None:
    who = requester(chain)
    submitted = jobs.submit(market, who, EXAMPLES / "matmul" / "job.yaml")
    seat_providers(chain, market, submitted.job_id)
    with pytest.raises(GpuMarketError, match="reclaimed after the settle deadline, in"):
        jobs.cancel_or_reclaim(market, who, submitted.job_id)
    client = jobs.chain_for(market, who)
    advance_past(chain, client, client.job_terms(submitted.job_id).settle_deadline)
    assert jobs.cancel_or_reclaim(market, who, submitted.job_id) == "reclaimed"
    assert client.get_job(submitted.job_id).status == JobStatus.RECLAIMED
    assert client.account_info(who.address).owed == submitted.escrow


def test_a_job_decided_on_chain_is_finalized_instead(
    chain: AnvilNode, market: WalletSettings
) -> None:
    who = requester(chain)
    submitted = jobs.submit(market, who, EXAMPLES / "matmul" / "job.yaml")
    job_id = submitted.job_id
    providers = seat_providers(chain, market, job_id)
    result, runtime_ms = b"\x5a" * 32, 60_000
    salts = [bytes([i + 1]) * 32 for i in range(len(providers))]
    for seat, (provider, salt) in enumerate(zip(providers, salts, strict=True)):
        provider.commit_on_chain(
            job_id, seat, commit_hash(job_id, provider.address, result, runtime_ms, salt)
        )
    client = jobs.chain_for(market, who)
    terms, seats = client.job_terms(job_id), client.get_seats(job_id)
    advance_past(chain, client, terms.reveal_open(seats))
    for seat, (provider, salt) in enumerate(zip(providers, salts, strict=True)):
        provider.reveal_on_chain(job_id, seat, result, runtime_ms, salt)
    advance_past(chain, client, terms.settle_deadline)
    assert jobs.cancel_or_reclaim(market, who, job_id) == "finalized"
    assert client.get_job(job_id).status == JobStatus.SETTLED
    # Each winner billed a minute at 6 tokens an hour; the requester gets everything else
    # back (the fee too: nobody settled).
    paid = 2 * to_wei("0.10")
    assert client.account_info(who.address).owed == submitted.escrow - paid


def test_insufficient_balance_says_how_much_is_missing(
    chain: AnvilNode, market: WalletSettings
) -> None:
    poor = Identity.from_private_key(bytes(Account.create().key))
    with pytest.raises(jobs.BalanceTooLow, match=r"holds 0 tokens .* 10.1 missing"):
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
    client = Web3Chain(chain.rpc_url, deployment, chain.accounts[REQUESTER].private_key)
    before = client.token_balance(who.address)
    with pytest.raises(
        CoordinatorRequestError, match=r"coordinator at http://127.0.0.1:9: unreachable"
    ):
        jobs.submit(dead, who, EXAMPLES / "matmul" / "job.yaml")
    assert client.token_balance(who.address) == before


def test_inputs_over_the_wallets_limit_are_refused_naming_the_setting(
    chain: AnvilNode, market: WalletSettings
) -> None:
    spec = EXAMPLES / "matmul" / "job.yaml"
    small = market.model_copy(update={"max_input_bytes": 10})
    with pytest.raises(jobs.InputTooLarge, match=r"more than the 10 allowed .WALLET_MAX_INPUT"):
        jobs.submit(small, requester(chain), spec)


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


def test_a_spec_no_provider_could_run_is_submitted_with_a_warning(
    chain: AnvilNode, market: WalletSettings
) -> None:
    who = requester(chain)
    warned: list[str] = []
    plain = jobs.submit(market, who, EXAMPLES / "matmul" / "job.yaml", warn=warned.append)
    assert plain.warnings == () and warned == []
    # The quote knew the inputs' size, so providers that would refuse them are not counted.
    folder = EXAMPLES / "matmul"  # its one input: the spec's own folder
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size > 0 and StubCoordinator.quoted[-1]["input_bytes"] == size
    reason = "does not meet requires: vendor nvidia, driver >= 560"
    StubCoordinator.quote = {"capable": 0, "providers_in_book": 3, "incapable": {reason: 3}}
    try:
        submitted = jobs.submit(market, who, EXAMPLES / "matmul" / "job.yaml", warn=warned.append)
    finally:
        StubCoordinator.quote = {"capable": 1, "providers_in_book": 1}
    assert warned == list(submitted.warnings) and len(warned) == 1
    assert "none of the 3 providers" in warned[0] and f"3 {reason}" in warned[0]
    assert "gpumarket job quote" in warned[0]
    # A warning, not a refusal: the job is on chain and the coordinator was told.
    assert StubCoordinator.notified[-1] == "0x" + submitted.job_id.hex()
    client = jobs.chain_for(market, who)
    assert client.get_job(submitted.job_id).status == JobStatus.OPEN


def test_the_assign_window_grows_with_the_jobs_queued_ahead(
    chain: AnvilNode, market: WalletSettings
) -> None:
    """Ten jobs under way (two seats each, like this one) over four providers able to run
    the job: five rounds of the 2-minute timeout more to be assigned in."""
    who = requester(chain)
    client = jobs.chain_for(market, who)
    StubCoordinator.quote = {"capable": 4, "providers_in_book": 5}
    StubCoordinator.metrics = "\n".join(
        [
            "# TYPE gpumarket_jobs gauge",
            'gpumarket_jobs{state="created"} 1.0',
            'gpumarket_jobs{state="matching"} 5.0',
            'gpumarket_jobs{state="assigned"} 1.0',
            'gpumarket_jobs{state="running"} 3.0',
            'gpumarket_jobs{state="committed"} 7.0',
            'gpumarket_jobs{state="settled"} 40.0',
            "",
        ]
    )
    try:
        start = client.now()
        submitted = jobs.submit(market, who, EXAMPLES / "matmul" / "job.yaml")
        end = client.now()
    finally:
        StubCoordinator.quote = {"capable": 1, "providers_in_book": 1}
        StubCoordinator.metrics = None
    terms = client.get_job(submitted.job_id).terms
    created = terms.assign_deadline - ASSIGN_WINDOW_S - 5 * 120
    assert start <= created <= end
    expected = job_windows(created, 120, 2, queue_wait_s=600)
    assert (terms.spare_deadline, terms.settle_deadline) == (
        expected.spare_deadline,
        expected.settle_deadline,
    )


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.timeout(180)
def test_submit_pins_the_inputs_and_spec_at_the_requesters_pinning_node(
    tmp_path: Path, chain: AnvilNode, market: WalletSettings
) -> None:
    pinning = start_ipfs(tmp_path / "pinning-node", name="pinning ipfs")
    try:
        settings = market.model_copy(
            update={"pin_to": pinning.api_url, "keystore_dir": tmp_path / "keystore"}
        )
        spec_path = EXAMPLES / "matmul" / "job.yaml"
        submitted = jobs.submit(settings, requester(chain), spec_path)
        assert submitted.pinned_at == pinning.api_url
        wanted = {submitted.spec_cid, *submitted.input_cids.values()}

        async def held() -> tuple[set[str], bytes, bytes]:
            # The pinning node was never connected to the wallet's: it holds the bytes itself.
            async with KuboContentStore(pinning.api_url, timeout=5) as node:
                spec = await node.read_bytes(submitted.spec_cid)
                code = await node.get(submitted.input_cids["code"], tmp_path / "code")
                return await node.pins(), spec, (code / "main.py").read_bytes()

        pins, spec, main = trio.run(held)
        assert wanted <= pins
        assert spec_from_canonical(spec).input_cids() == submitted.input_cids
        assert main == (EXAMPLES / "matmul" / "main.py").read_bytes()
        # The job remembers the node: `job result` pins the result there too.
        job_id = submitted.job_id
        assert records.read(settings, job_id)["pin_to"] == pinning.api_url
        later = settings.model_copy(update={"pin_to": None})
        assert jobs.with_recorded_pin_to(later, job_id).pin_to == pinning.api_url
        other = "http://127.0.0.1:5999"
        chosen = settings.model_copy(update={"pin_to": other})
        assert jobs.with_recorded_pin_to(chosen, job_id).pin_to == other  # given now wins
        records.update(settings, job_id, pin_to="not a url")
        assert jobs.with_recorded_pin_to(later, job_id).pin_to is None
    finally:
        pinning.stop()


def test_an_unreachable_pinning_node_stops_the_submit_before_anything_is_paid(
    tmp_path: Path, chain: AnvilNode, market: WalletSettings
) -> None:
    closed = _closed_port_url()
    settings = market.model_copy(
        update={"pin_to": closed, "keystore_dir": tmp_path / "keystore", "ipfs_timeout_s": 3.0}
    )
    who = requester(chain)
    client = jobs.chain_for(market, who)
    before = client.token_balance(who.address)
    notified = len(StubCoordinator.notified)
    seen: list[tuple[str, int, int]] = []
    with pytest.raises(jobs.PinFailed) as caught:
        jobs.submit(
            settings, who, EXAMPLES / "matmul" / "job.yaml", progress=lambda *a: seen.append(a)
        )
    message = str(caught.value)
    assert f"pinning the job's uploads at {closed} failed" in message
    assert "WALLET_PIN_TO or --pin-to" in message and "nothing was paid" in message
    assert seen == []  # refused before uploading anything
    assert client.token_balance(who.address) == before
    assert len(StubCoordinator.notified) == notified


def test_a_pinning_node_that_is_not_a_url_is_refused_by_job_submit(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gpumarket_cli import app

    shown = CliRunner().invoke(
        app,
        ["job", "submit", str(EXAMPLES / "matmul" / "job.yaml"), "--pin-to", "127.0.0.1:5001"],
        env={"COLUMNS": "200", "WALLET_KEYSTORE_DIR": str(tmp_path / "keystore")},
    )
    assert shown.exit_code != 0
    assert "must be the http(s) URL of a Kubo RPC API" in shown.output
