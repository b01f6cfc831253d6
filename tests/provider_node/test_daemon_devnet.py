"""A real provider daemon on the devnet: Anvil with deployed contracts, IPFS, libp2p, bwrap.

The test plays the coordinator with its own libp2p host and the coordinator's dev account:
it listens for adverts, bonds, creates jobs on chain, offers the provider a seat and assigns
it with the provider's signed Accept, sends the signed Assignment, answers the commitment
with a CommitReceipt, and checks that the commitment binds the CID it computes itself from
the outputs the job must produce, that the reveal publishes exactly that CID to IPFS, and
that a failing job ends in a failure report (and its committed failure output) while the
daemon keeps serving.
"""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import trio

from contracts.chain import Web3Chain
from contracts.deploy import deploy_all, fund_accounts
from contracts.models import AcceptedSeat, Deployment, JobRequest
from devnet.anvil import AnvilNode
from devnet.ipfs import IpfsNode
from protocol import eip712
from protocol.identity import Identity, import_private_key
from protocol.ids import Address, Cid, JobId, PeerId, to_wei
from protocol.ipfs import KuboContentStore
from protocol.ipfs.cid import result_digest
from protocol.ipfs.local import path_ref
from protocol.messages import (
    Accept,
    Ack,
    Advert,
    Assignment,
    Commitment,
    CommitReceipt,
    FailureKind,
    FailureReport,
    JobOffer,
    Message,
    Reveal,
    RevealRequest,
)
from protocol.p2p.gossip import subscribe
from protocol.p2p.host import open_host
from protocol.p2p.rpc_client import request
from protocol.p2p.rpc_server import RequestHandlers
from protocol.p2p.rpc_wire import Limits
from protocol.registry import ADVERT_TOPIC, JOB_PROTOCOL, REPORT_PROTOCOL
from protocol.signing import Verifier, decode_signed, encode_signed, sign_message
from provider_node.benchmark import BenchmarkSettings, run_benchmark
from provider_node.daemon import ProviderNode
from provider_node.profile import offer_from_benchmark
from provider_node.settings import ProviderSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PASSWORD = "devnet-password"
PRICE = to_wei("1")
RATE = to_wei("1")  # the provider's advertised price per GPU-hour (a CPU seat counts as one)

MATMUL_JOB = """
import json, os, pathlib
import torch
a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
b = torch.arange(8, dtype=torch.float32).reshape(4, 2) - 3
out = pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"])
(out / "product.json").write_text(json.dumps((a @ b).tolist()))
(out / "seed.txt").write_text(os.environ["GPUMARKET_SEED"])
print("product written")
"""

FAILING_JOB = "import sys\nprint('giving up')\nsys.exit(1)\n"


def expected_cid(tmp: Path, seed: int) -> str:
    """The outputs MATMUL_JOB must produce, computed here with numpy and hashed."""
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.arange(8, dtype=np.float32).reshape(4, 2) - 3
    out = tmp / "expected"
    out.mkdir()
    (out / "product.json").write_text(json.dumps((a @ b).tolist()))
    (out / "seed.txt").write_text(str(seed))
    return path_ref(out).text


class Coordinator:
    """The test's stand-in coordinator: chain account, libp2p reports, job creation."""

    def __init__(self, chain: Web3Chain, requester: Web3Chain, identity: Identity) -> None:
        self.chain = chain
        self.requester = requester
        self.identity = identity
        self.reports: list[Message] = []
        self.verifier = Verifier()

    async def on_report(self, data: bytes, peer: PeerId) -> bytes:
        body: Any = self.verifier.open_bytes(data)
        self.reports.append(body)
        answer: Message = Ack(sender=self.identity.address, of=body.message_type)
        if isinstance(body, Commitment):
            signature = eip712.sign_receipt(
                self.identity.private_key,
                self.chain.deployment.domain,
                body.job_id,
                body.provider,
                0,
                body.commit_hash,
            )
            answer = CommitReceipt(
                job_id=body.job_id,
                provider=body.provider,
                coordinator=self.identity.address,
                seat=0,
                commit_hash=body.commit_hash,
                signature=signature,
            )
        return encode_signed(sign_message(answer, self.identity))

    def create(self, spec_cid: str) -> JobId:
        now = self.chain.now()
        request_ = JobRequest(
            spec_digest=result_digest(spec_cid),
            spec_cid=spec_cid,
            coordinator=self.identity.address,
            redundancy=1,
            price_cap=PRICE,
            fee=to_wei("0.1"),
            timeout_ms=120_000,
            assign_deadline=now + 600,
            commit_window=1200,
            reveal_window=600,
            spare_deadline=now + 600,
            settle_deadline=now + 3000,
        )
        job_id, _ = self.requester.create_job(request_)
        return job_id

    async def seat(self, node: Any, provider: PeerId, address: Address, spec_cid: Cid) -> JobId:
        """Create a job, offer the provider seat 0 and assign it with the signed Accept."""
        job_id = await trio.to_thread.run_sync(self.create, spec_cid)
        offer = JobOffer(
            job_id=job_id,
            provider=address,
            coordinator=self.identity.address,
            seat=0,
            price=PRICE,
            rate_per_hour=RATE,
            expiry=self.chain.now() + 120,
            spec_cid=spec_cid,
        )
        payload = encode_signed(sign_message(offer, self.identity))
        accept = decode_signed(await request(node, provider, JOB_PROTOCOL, payload)).body
        assert isinstance(accept, Accept), accept
        consent = AcceptedSeat(
            accept.provider,
            accept.price,
            accept.rate_per_hour,
            accept.expiry,
            eip712.Signature.from_bytes(accept.signature),
        )
        await trio.to_thread.run_sync(self.chain.assign, job_id, [consent])
        return job_id

    async def wait_report(self, cls: type, job_id: JobId, timeout: float = 120) -> Any:
        with trio.fail_after(timeout):
            while True:
                for body in self.reports:
                    if isinstance(body, cls) and getattr(body, "job_id", None) == job_id:
                        return body
                await trio.sleep(0.1)


async def upload_job(store: KuboContentStore, tmp: Path, name: str, code: str) -> tuple[Cid, Cid]:
    code_dir = tmp / f"{name}-code"
    code_dir.mkdir()
    (code_dir / "main.py").write_text(textwrap.dedent(code))
    code_cid = await store.add_directory(code_dir)
    spec = (
        f"name: {name}\n"
        "runtime: {kind: torch, entrypoint: main.py}\n"
        f"inputs: [{{name: code, cid: {code_cid}}}]\n"
        'price: {max_per_provider: "1"}\n'
        "timeout: 120s\nmax_output: 1MiB\n"
    )
    return await store.add_bytes(spec.encode()), code_cid


async def test_daemon_serves_jobs_on_the_devnet(
    chain: AnvilNode, ipfs: IpfsNode, tmp_path: Path
) -> None:
    deployer, coordinator_account, provider_account = chain.accounts[0:3]
    provider_address = Address(provider_account.address)
    requester_account = chain.accounts[5]
    addresses = deploy_all(chain.rpc_url, deployer.private_key, unbonding_delay=60)
    fund_accounts(
        chain.rpc_url,
        deployer.private_key,
        addresses["token"],
        [provider_account.address, requester_account.address, coordinator_account.address],
        to_wei("1000"),
    )
    deployment = Deployment.from_addresses(chain.chain_id, addresses)
    coordinator_chain = Web3Chain(chain.rpc_url, deployment, coordinator_account.private_key)
    coordinator_chain.bond_coordinator(to_wei("100"))
    requester_chain = coordinator_chain.for_account(requester_account.private_key)
    coordinator_id = Identity.from_private_key(coordinator_account.private_key)
    coordinator = Coordinator(coordinator_chain, requester_chain, coordinator_id)

    keystore = tmp_path / "provider.keystore.json"
    import_private_key(keystore, provider_account.private_key, PASSWORD, scrypt_n=2**4)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    offer = offer_from_benchmark(
        run_benchmark(settings=BenchmarkSettings.tiny(), cache_dir=tmp_path / "bench").result,
        cpu_only=True,
    )

    async with open_host(coordinator_id.private_key) as coord_node:
        handlers = RequestHandlers(coord_node)
        handlers.register(REPORT_PROTOCOL, coordinator.on_report)
        settings = ProviderSettings(
            rpc_url=chain.rpc_url,
            market_address=addresses["market"],
            registry_address=addresses["registry"],
            token_address=addresses["token"],
            keystore=keystore,
            password_file=password_file,
            ipfs_api=ipfs.api_url,
            coordinator_multiaddr=coord_node.addrs[0],
            work_dir=tmp_path / "provider",
            runtime="bwrap",
            stake=Decimal("100"),
            cpu_only=True,
            metrics_port=0,
            advert_period_s=1.0,
            shutdown_grace_s=2.0,
        )
        advert_verifier = Verifier()

        def check_advert(data: bytes, sender: PeerId) -> Advert:
            advert = advert_verifier.open_bytes(data, Advert)
            assert advert.peer_id == sender
            return advert

        async with (
            subscribe(coord_node, ADVERT_TOPIC, check_advert) as adverts,
            KuboContentStore(ipfs.api_url) as store,
            ProviderNode(settings, offer=offer) as provider,
        ):
            ready = json.loads(settings.ready_file.read_text())
            assert ready["address"] == provider_account.address
            assert ready["peer_id"] == provider.peer_id and ready["metrics_url"]
            with trio.fail_after(30):
                delivery = await adverts.receive()
            advert = delivery.value
            assert advert.provider == provider_account.address
            assert advert.cpu_only and advert.runtimes == ("torch",)
            info = coordinator_chain.provider_info(provider_account.address)
            assert info.registered and info.stake == to_wei("100")

            # Warm sandboxes are on by default: the first job starts in one.
            assert provider.warm is not None
            await provider.warm.wait_ready(timeout_s=120)

            # A job that succeeds: commit, then reveal into IPFS under the committed CID.
            spec_cid, code_cid = await upload_job(store, tmp_path, "matmul", MATMUL_JOB)
            job_id = await coordinator.seat(
                coord_node, provider.peer_id, provider_address, spec_cid
            )
            seats = coordinator_chain.get_seats(job_id)
            terms = coordinator_chain.job_terms(job_id)
            assignment = Assignment(
                job_id=job_id,
                provider=provider_address,
                coordinator=coordinator_id.address,
                seat=0,
                price=PRICE,
                spec_cid=spec_cid,
                input_cids={"code": code_cid},
                seed=7,
                commit_deadline=terms.commit_deadline(seats[0]),
                reveal_deadline=terms.reveal_close(seats),
            )
            payload = encode_signed(sign_message(assignment, coordinator_id))
            reply = await request(coord_node, provider.peer_id, JOB_PROTOCOL, payload)
            assert isinstance(decode_signed(reply).body, Ack)
            commitment = await coordinator.wait_report(Commitment, job_id)
            assert provider.warm.figures.warm_starts == 1
            domain = deployment.domain
            commitment.verify(domain)
            cid = expected_cid(tmp_path, 7)
            assert not await store.has(cid)  # committed, not yet published

            reveal_request = RevealRequest(
                job_id=job_id,
                provider=provider_address,
                coordinator=coordinator_id.address,
                reveal_deadline=assignment.reveal_deadline,
            )
            payload = encode_signed(sign_message(reveal_request, coordinator_id))
            limits = Limits(timeout_s=60)
            reply = await request(coord_node, provider.peer_id, JOB_PROTOCOL, payload, limits)
            reveal = decode_signed(reply).body
            assert isinstance(reveal, Reveal)
            reveal.verify(domain)
            assert reveal.matches(commitment) and reveal.result_cid == cid
            assert 0 < reveal.runtime_ms < 120_000
            fetched = await store.get(cid, tmp_path / "fetched")
            assert (fetched / "seed.txt").read_text() == "7"

            # A job that fails: a failure report and its committed failure output, and the
            # daemon keeps advertising.
            spec_cid, code_cid = await upload_job(store, tmp_path, "failing", FAILING_JOB)
            job_id = await coordinator.seat(
                coord_node, provider.peer_id, provider_address, spec_cid
            )
            failing = assignment.model_copy(
                update={"job_id": job_id, "spec_cid": spec_cid, "input_cids": {"code": code_cid}}
            )
            payload = encode_signed(sign_message(failing, coordinator_id))
            reply = await request(coord_node, provider.peer_id, JOB_PROTOCOL, payload)
            assert isinstance(decode_signed(reply).body, Ack)
            report = await coordinator.wait_report(FailureReport, job_id)
            assert report.kind is FailureKind.NONZERO_EXIT and report.exit_code == 1
            failed_commitment = await coordinator.wait_report(Commitment, job_id)
            failed_commitment.verify(domain)
            async with httpx.AsyncClient(timeout=10) as http:
                scrape = (await http.get(ready["metrics_url"])).text
            assert 'gpumarket_provider_jobs_total{outcome="ok"} 1.0' in scrape
            assert 'gpumarket_provider_jobs_total{outcome="nonzero_exit"} 1.0' in scrape
            assert "gpumarket_provider_job_duration_seconds_count" in scrape
            assert "gpumarket_provider_max_jobs" in scrape
            assert 'gpumarket_provider_sandbox_starts_total{kind="warm"}' in scrape
            seq = advert.seq
            with trio.fail_after(30):
                while (await adverts.receive()).value.seq <= seq:
                    pass
        assert not settings.ready_file.exists()
