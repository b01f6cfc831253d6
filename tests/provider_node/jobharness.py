"""The job server and worker wired to fakes: the in-memory chain (``ChainWorld``), an
in-memory content store, the unsafe process runtime, and a reporter that plays the
coordinator's side of the report stream (a signed CommitReceipt for each Commitment,
unless told otherwise)."""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import trio

from protocol import eip712
from protocol.identity import Identity
from protocol.ids import Address, Cid, JobId, Wei
from protocol.ipfs import MemoryContentStore
from protocol.messages import (
    Ack,
    Assignment,
    Commitment,
    CommitReceipt,
    Message,
    RevealRequest,
)
from protocol.signing import decode_signed, encode_signed, sign_message
from provider_node.fallback import ChainFallback
from provider_node.gpus import GpuPool
from provider_node.jobstore import JobStore
from provider_node.metrics import ProviderMetrics
from provider_node.offers import OfferDesk
from provider_node.policy import ConsentPolicy
from provider_node.runtimes import ProcessRuntime, Runtime
from provider_node.server import JobServer
from provider_node.worker import JobWorker, WorkerConfig
from tests.provider_node.chainworld import PRICE, RATE, ChainWorld

ReceiptMode = Literal["valid", "ack", "wrong_seat", "forged"]


@dataclass
class FakeReporter:
    """Records reports; answers a Commitment as ``mode`` says (a valid CommitReceipt by
    default, an Ack, a receipt for the wrong seat, or one signed by a stranger)."""

    cw: ChainWorld
    mode: ReceiptMode = "valid"
    sent: list[Message] = field(default_factory=list)

    async def send(self, body: Message) -> Message | None:
        self.sent.append(body)
        coordinator = self.cw.coordinator
        if not isinstance(body, Commitment) or self.mode == "ack":
            return Ack(sender=coordinator.address, of=body.message_type)
        seats = self.cw.chain("coordinator").get_seats(body.job_id)
        seat = [s.provider for s in seats].index(body.provider)
        if self.mode == "wrong_seat":
            seat += 1
        signer = self.cw.ids["other"] if self.mode == "forged" else coordinator
        signature = eip712.sign_receipt(
            signer.private_key,
            self.cw.world.deployment.domain,
            body.job_id,
            body.provider,
            seat,
            body.commit_hash,
        )
        return CommitReceipt(
            job_id=body.job_id,
            provider=body.provider,
            coordinator=coordinator.address,
            seat=seat,
            commit_hash=body.commit_hash,
            signature=signature,
        )

    def of(self, cls: type) -> list[Message]:
        return [m for m in self.sent if isinstance(m, cls)]


@dataclass
class Harness:
    cw: ChainWorld
    store: MemoryContentStore
    reporter: FakeReporter
    jobs: JobStore
    tmp: Path
    counter: int = 0
    metrics: ProviderMetrics = field(default_factory=lambda: ProviderMetrics(use_nvml=False))

    @classmethod
    def create(cls, tmp: Path, tag: str) -> Harness:
        cw = ChainWorld.create(tag)
        return cls(cw, MemoryContentStore(), FakeReporter(cw), JobStore(tmp / "provider"), tmp)

    @property
    def provider(self) -> Identity:
        return self.cw.provider

    @property
    def coordinator(self) -> Identity:
        return self.cw.coordinator

    @property
    def domain(self) -> eip712.Eip712Domain:
        return self.cw.world.deployment.domain

    def worker(
        self, *, runtime: Runtime | None = None, gpus: tuple[int, ...] = (), **config: object
    ) -> JobWorker:
        return JobWorker(
            self.provider,
            self.store,
            runtime or ProcessRuntime(unsafe=True),
            self.jobs,
            self.domain,
            GpuPool(gpus),
            WorkerConfig(memory_bytes=2 << 30, **config),  # type: ignore[arg-type]
            metrics=self.metrics,
        )

    def policy(self) -> ConsentPolicy:
        return ConsentPolicy(
            coordinators=frozenset({Address(self.coordinator.address)}),
            min_rate_per_gpu_hour=Wei(RATE),
            min_rate_per_cpu_hour=Wei(RATE),
            max_lock_s=7 * 24 * 3600,
        )

    def fallback(self) -> ChainFallback:
        return ChainFallback(self.cw.chain("provider"), self.jobs, interval_s=0.05)

    def server(
        self,
        max_concurrent: int = 2,
        *,
        max_queued: int = 0,
        fallback: ChainFallback | None = None,
        worker: JobWorker | None = None,
    ) -> JobServer:
        chain = self.cw.chain("provider")
        return JobServer(
            self.provider,
            chain,
            worker or self.worker(),
            self.jobs,
            lambda peer: self.reporter,
            max_concurrent=max_concurrent,
            max_queued=max_queued,
            offers=OfferDesk(self.provider, chain, self.domain, self.policy()),
            fallback=fallback,
        )

    async def job(
        self,
        code: str,
        *,
        timeout: str = "60s",
        packages: str = "{}",
        resources: str | None = None,
        runtime: str | None = None,
        gpus: int = 0,
    ) -> tuple[Cid, Cid]:
        """Upload ``code`` and a spec running it (importing ``packages``, a YAML mapping;
        or with ``runtime`` as the spec's runtime line; ``resources`` as a YAML mapping,
        else ``gpus``); returns (spec CID, code CID)."""
        self.counter += 1
        code_dir = self.tmp / f"code{self.counter}"
        code_dir.mkdir()
        (code_dir / "main.py").write_text(textwrap.dedent(code))
        code_cid = await self.store.add_directory(code_dir)
        spec = (
            f"name: unit-job-{self.counter}\n"
            f"runtime: {runtime or f'{{kind: torch, entrypoint: main.py, packages: {packages}}}'}\n"
            f"inputs: [{{name: code, cid: {code_cid}}}]\n"
            f"resources: {resources if resources is not None else f'{{gpus: {gpus}}}'}\n"
            'price: {max_per_provider: "1"}\n'
            f"timeout: {timeout}\nmax_output: 1MiB\n"
        )
        spec_cid = await self.store.add_bytes(spec.encode())
        return spec_cid, code_cid

    def seat(self, job_id: JobId, seat: int = 0, price: int = PRICE) -> None:
        """Seat the provider on chain with its own Accept (signed here, not via an offer)."""
        from protocol.messages import Accept

        terms = self.cw.chain("provider").job_terms(job_id)
        expiry = self.cw.world.time + 60
        p = self.provider
        sig = eip712.sign_accept(
            p.private_key,
            self.domain,
            job_id,
            p.address,
            seat,
            price,
            RATE,
            terms.terms_hash(),
            expiry,
        )
        self.cw.seat(
            Accept(
                job_id=job_id,
                provider=p.address,
                seat=seat,
                price=Wei(price),
                rate_per_hour=RATE,
                expiry=expiry,
                signature=sig,
            )
        )

    async def assignment(
        self,
        code: str,
        *,
        on_chain: bool = True,
        timeout: str = "60s",
        packages: str = "{}",
        resources: str | None = None,
        runtime: str | None = None,
        gpus: int = 0,
    ) -> Assignment:
        """A job created on chain for ``code`` (and this provider seated at seat 0 unless
        ``on_chain`` is false), and the coordinator's Assignment for it."""
        spec_cid, code_cid = await self.job(
            code,
            timeout=timeout,
            packages=packages,
            resources=resources,
            runtime=runtime,
            gpus=gpus,
        )
        job_id = self.cw.create_job(spec_cid)
        if on_chain:
            self.seat(job_id)
        now = int(time.time())
        return Assignment(
            job_id=job_id,
            provider=self.provider.address,
            coordinator=self.coordinator.address,
            seat=0,
            price=PRICE,
            spec_cid=spec_cid,
            input_cids={"code": code_cid},
            seed=42,
            commit_deadline=now + 600,
            reveal_deadline=now + 1200,
        )

    def reveal_request(self, assignment: Assignment) -> RevealRequest:
        return RevealRequest(
            job_id=assignment.job_id,
            provider=self.provider.address,
            coordinator=self.coordinator.address,
            reveal_deadline=assignment.reveal_deadline,
        )


async def ask(
    harness: Harness, server: JobServer, body: Message, signer: Identity | None = None
) -> Message:
    """Send ``body`` signed by ``signer`` (the coordinator by default); the signed reply."""
    who = signer or harness.coordinator
    reply = await server.handle(encode_signed(sign_message(body, who)), who.peer_id)
    signed = decode_signed(reply)
    assert signed.signer == harness.provider.address
    return signed.body


async def wait_for(reporter: FakeReporter, cls: type, job_id: JobId) -> Message:
    with trio.fail_after(90):
        while True:
            for message in reporter.of(cls):
                if getattr(message, "job_id", None) == job_id:
                    return message
            await trio.sleep(0.05)
