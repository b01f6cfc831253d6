"""A provider daemon running container jobs in real podman containers, end to end.

Real Anvil with the deployed contracts, a real IPFS daemon, libp2p on loopback, and the
image built for the session (no registry: it is imported locally and named by digest). The
test plays the coordinator as in ``test_daemon_devnet``: it seats the provider on chain,
sends the signed assignment of a ``kind: container`` job, and checks that the commitment and
the reveal bind exactly the outputs the job must produce; then the same for a torch job in
the provider's torch image (the CID the bwrap daemon produces); then that a spec naming its
image by tag is reported as bad input without running.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from contracts.chain import Web3Chain
from contracts.deploy import deploy_all, fund_accounts
from contracts.models import Deployment
from devnet.anvil import AnvilNode
from devnet.ipfs import IpfsNode
from protocol.identity import Identity, import_private_key
from protocol.ids import Address, Cid, PeerId, to_wei
from protocol.ipfs import KuboContentStore
from protocol.ipfs.local import path_ref
from protocol.messages import (
    Ack,
    Advert,
    Assignment,
    Commitment,
    FailureKind,
    FailureReport,
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
from tests.provider_node.conftest import ContainerImages
from tests.provider_node.test_daemon_devnet import (
    MATMUL_JOB,
    PASSWORD,
    PRICE,
    Coordinator,
    upload_job,
)
from tests.provider_node.test_daemon_devnet import expected_cid as matmul_cid

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CONTAINER_JOB = """
import json, os
out = os.environ["GPUMARKET_OUTPUT_DIR"]
rows = [[sum(i * j for j in range(4)) for i in range(3)]]
with open(os.path.join(out, "rows.json"), "w") as f:
    json.dump(rows, f)
with open(os.path.join(out, "who.txt"), "w") as f:
    f.write(f"{os.getuid()} {os.environ['GPUMARKET_SEED']}")
print("container job done")
"""


def expected_cid(tmp: Path, seed: int) -> str:
    """The outputs CONTAINER_JOB must produce, written here and hashed."""
    out = tmp / "expected"
    out.mkdir()
    (out / "rows.json").write_text(json.dumps([[sum(i * j for j in range(4)) for i in range(3)]]))
    (out / "who.txt").write_text(f"65534 {seed}")
    return path_ref(out).text


async def upload_container_job(
    store: KuboContentStore, tmp: Path, name: str, image: str
) -> tuple[Cid, Cid]:
    code_dir = tmp / f"{name}-code"
    code_dir.mkdir()
    (code_dir / "main.py").write_text(CONTAINER_JOB)
    code_cid = await store.add_directory(code_dir)
    spec = (
        f"name: {name}\n"
        f"runtime: {{kind: container, image: '{image}', "
        "command: [python3, -s, inputs/code/main.py]}\n"
        f"inputs: [{{name: code, cid: {code_cid}}}]\n"
        'price: {max_per_provider: "1"}\n'
        "timeout: 120s\nmax_output: 1MiB\n"
    )
    return await store.add_bytes(spec.encode()), code_cid


async def test_daemon_runs_a_container_job(
    chain: AnvilNode, ipfs: IpfsNode, tmp_path: Path, container_images: ContainerImages
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
            runtime="podman",
            container_torch_image=container_images.python,
            container_oci_runtime=container_images.oci_runtime,
            stake=Decimal("100"),
            cpu_only=True,
            metrics_port=0,
            advert_period_s=1.0,
            shutdown_grace_s=2.0,
        )
        verifier = Verifier()

        def check_advert(data: bytes, sender: PeerId) -> Advert:
            return verifier.open_bytes(data, Advert)

        async with (
            subscribe(coord_node, ADVERT_TOPIC, check_advert) as adverts,
            KuboContentStore(ipfs.api_url) as store,
            ProviderNode(settings, offer=offer) as provider,
        ):
            with trio.fail_after(30):
                advert = (await adverts.receive()).value
            assert advert.provider == provider_account.address
            assert advert.runtimes == ("torch", "container")
            assert provider.runtime is not None and provider.runtime.name == "podman"

            spec_cid, code_cid = await upload_container_job(
                store, tmp_path, "container-rows", container_images.python
            )
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
                seed=5,
                commit_deadline=terms.commit_deadline(seats[0]),
                reveal_deadline=terms.reveal_close(seats),
            )
            payload = encode_signed(sign_message(assignment, coordinator_id))
            reply = await request(coord_node, provider.peer_id, JOB_PROTOCOL, payload)
            assert isinstance(decode_signed(reply).body, Ack)
            commitment = await coordinator.wait_report(Commitment, job_id)
            commitment.verify(deployment.domain)
            cid = expected_cid(tmp_path, 5)

            reveal_request = RevealRequest(
                job_id=job_id,
                provider=provider_address,
                coordinator=coordinator_id.address,
                reveal_deadline=assignment.reveal_deadline,
            )
            payload = encode_signed(sign_message(reveal_request, coordinator_id))
            reply = await request(
                coord_node, provider.peer_id, JOB_PROTOCOL, payload, Limits(timeout_s=60)
            )
            reveal = decode_signed(reply).body
            assert isinstance(reveal, Reveal)
            assert reveal.matches(commitment) and reveal.result_cid == cid
            fetched = await store.get(cid, tmp_path / "fetched")
            assert (fetched / "who.txt").read_text() == "65534 5"

            # A torch job runs in the provider's torch image through the launcher, and its
            # outputs hash to the same CID the bwrap daemon test expects.
            spec_cid, code_cid = await upload_job(store, tmp_path, "matmul", MATMUL_JOB)
            job_id = await coordinator.seat(
                coord_node, provider.peer_id, provider_address, spec_cid
            )
            torch_job = assignment.model_copy(
                update={"job_id": job_id, "spec_cid": spec_cid, "input_cids": {"code": code_cid}}
            )
            payload = encode_signed(sign_message(torch_job, coordinator_id))
            reply = await request(coord_node, provider.peer_id, JOB_PROTOCOL, payload)
            assert isinstance(decode_signed(reply).body, Ack)
            commitment = await coordinator.wait_report(Commitment, job_id)
            reveal_request = reveal_request.model_copy(update={"job_id": job_id})
            payload = encode_signed(sign_message(reveal_request, coordinator_id))
            reply = await request(
                coord_node, provider.peer_id, JOB_PROTOCOL, payload, Limits(timeout_s=60)
            )
            reveal = decode_signed(reply).body
            assert isinstance(reveal, Reveal) and reveal.matches(commitment)
            matmul_dir = tmp_path / "matmul-expected"
            matmul_dir.mkdir()
            assert reveal.result_cid == matmul_cid(matmul_dir, 5)

            # A spec naming its image by tag is bad input: reported, never run.
            tag = container_images.python.split("@")[0] + ":latest"
            spec_cid, code_cid = await upload_container_job(store, tmp_path, "tagged", tag)
            job_id = await coordinator.seat(
                coord_node, provider.peer_id, provider_address, spec_cid
            )
            tagged = assignment.model_copy(
                update={"job_id": job_id, "spec_cid": spec_cid, "input_cids": {"code": code_cid}}
            )
            payload = encode_signed(sign_message(tagged, coordinator_id))
            reply = await request(coord_node, provider.peer_id, JOB_PROTOCOL, payload)
            assert isinstance(decode_signed(reply).body, Ack)
            report = await coordinator.wait_report(FailureReport, job_id)
            assert report.kind is FailureKind.BAD_INPUT
            assert "pinned by digest" in report.detail
