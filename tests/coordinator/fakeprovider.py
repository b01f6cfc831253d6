"""A scripted provider for coordinator tests: real libp2p, real signatures, fake work.

It advertises on gossipsub, answers ``JOB_PROTOCOL`` (Ack on Assignment, its Reveal on a
RevealRequest), and after accepting an assignment sends a signed Commitment on
``REPORT_PROTOCOL``. ``result`` picks its answer (providers with equal ``result`` agree);
``silent`` makes it ignore assignments, the way a hung provider would; ``fail_with``
makes it report a failed run instead of committing. With ``max_jobs``
it runs at most that many jobs at once, refuses more as busy (as the real provider does)
and advertises its utilization.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

import trio

from protocol import eip712
from protocol.identity import Identity
from protocol.ids import Cid, JobId, PeerId, Wei
from protocol.messages import (
    Ack,
    Advert,
    Assignment,
    Benchmark,
    Cancel,
    Commitment,
    ErrorCode,
    ErrorReply,
    FailureKind,
    FailureReport,
    Fingerprint,
    Message,
    Reveal,
    RevealRequest,
)
from protocol.p2p.adverts import AdvertPublisher
from protocol.p2p.host import Node, open_host
from protocol.p2p.rpc_client import request
from protocol.p2p.rpc_server import RequestHandlers
from protocol.registry import JOB_PROTOCOL, REPORT_PROTOCOL
from protocol.signing import decode_signed, encode_signed, sign_message


@dataclass
class FakeProvider:
    identity: Identity
    domain: eip712.Eip712Domain
    result: bytes = b"honest"
    silent: bool = False
    price_per_hour: int = 1_000_000
    node: Node | None = None
    assignments: list[Assignment] = field(default_factory=list)
    cancels: list[Cancel] = field(default_factory=list)
    salts: dict[bytes, bytes] = field(default_factory=dict)
    seq: int = 0
    commit_delay_s: float = 0.2
    max_jobs: int = 0  # 0: no limit
    running: set[bytes] = field(default_factory=set)
    busy_refusals: int = 0
    fail_with: tuple[FailureKind, str] | None = None  # report this failure, not a result

    @property
    def address(self) -> str:
        return self.identity.address

    def result_cid(self) -> Cid:
        return eip712.digest_to_cid(hashlib.sha256(self.result).digest())

    def advert(self) -> Advert:
        assert self.node is not None
        self.seq += 1
        return Advert(
            provider=self.identity.address,
            peer_id=self.identity.peer_id,
            multiaddrs=tuple(self.node.addrs),
            gpus=(),
            benchmark=Benchmark(tflops={"fp32": 0.5}, memory_bandwidth_gbps=10.0),
            fingerprint=Fingerprint(backend="cpu", gpu_model="cpu", torch="2.13.0"),
            price_per_gpu_hour=Wei(self.price_per_hour),
            free_gpus=0,
            utilization=min(1.0, len(self.running) / self.max_jobs) if self.max_jobs else 0.0,
            runtimes=("torch",),
            software={"gpumarket": "test"},
            seq=self.seq,
            expires_at=int(time.time()) + 30,
        )

    async def handle(self, data: bytes, peer: PeerId) -> bytes:
        body = decode_signed(data).body
        reply: Message
        if isinstance(body, Assignment):
            if self.silent:
                await trio.sleep_forever()
            known = self.max_jobs > 0 and any(a.job_id == body.job_id for a in self.assignments)
            if not known and self.max_jobs and len(self.running) >= self.max_jobs:
                self.busy_refusals += 1
                busy = ErrorReply(
                    sender=self.identity.address,
                    code=ErrorCode.BUSY,
                    message=f"running {len(self.running)} jobs already",
                )
                return encode_signed(sign_message(busy, self.identity))
            if known:
                ack = Ack(sender=self.identity.address, of=body.message_type, job_id=body.job_id)
                return encode_signed(sign_message(ack, self.identity))
            self.running.add(bytes(body.job_id))
            self.assignments.append(body)
            assert self.node is not None
            self.node.nursery.start_soon(self._commit, body, peer)
            reply = Ack(sender=self.identity.address, of=body.message_type, job_id=body.job_id)
        elif isinstance(body, RevealRequest):
            salt = self.salts[bytes(body.job_id)]
            digest = eip712.cid_to_result_digest(self.result_cid())
            signature = eip712.sign_reveal(
                self.identity.private_key,
                self.domain,
                body.job_id,
                self.identity.address,
                digest,
                salt,
            )
            reply = Reveal(
                job_id=body.job_id,
                provider=self.identity.address,
                result_cid=self.result_cid(),
                salt=salt,
                signature=signature,
            )
        elif isinstance(body, Cancel):
            self.cancels.append(body)
            reply = Ack(sender=self.identity.address, of=body.message_type, job_id=body.job_id)
        else:
            reply = ErrorReply(
                sender=self.identity.address, code=ErrorCode.UNSUPPORTED, message="no"
            )
        return encode_signed(sign_message(cast(Message, reply), self.identity))

    async def _commit(self, assignment: Assignment, coordinator: PeerId) -> None:
        await trio.sleep(self.commit_delay_s)
        job_id = JobId(bytes(assignment.job_id))
        salt = hashlib.sha256(self.identity.private_key + job_id).digest()
        self.salts[bytes(job_id)] = salt
        digest = eip712.cid_to_result_digest(self.result_cid())
        commit = eip712.commit_hash(digest, salt)
        signature = eip712.sign_commit(
            self.identity.private_key, self.domain, job_id, self.identity.address, commit
        )
        body: Commitment | FailureReport = Commitment(
            job_id=job_id, provider=self.identity.address, commit_hash=commit, signature=signature
        )
        if self.fail_with is not None:
            kind, detail = self.fail_with
            body = FailureReport(
                job_id=job_id, provider=self.identity.address, kind=kind, detail=detail
            )
        node = self.node
        assert node is not None
        for _ in range(400):
            try:
                await request(
                    node,
                    coordinator,
                    REPORT_PROTOCOL,
                    encode_signed(sign_message(body, self.identity)),
                )
                break
            except Exception:
                await trio.sleep(0.5)
        self.running.discard(bytes(job_id))

    async def _advertise(self, publisher: AdvertPublisher) -> None:
        while True:
            await publisher.publish(sign_message(self.advert(), self.identity))
            await trio.sleep(0.5)


@asynccontextmanager
async def run_provider(
    provider: FakeProvider, coordinator_addr: str | None
) -> AsyncIterator[FakeProvider]:
    async with open_host(provider.identity.private_key) as node:
        provider.node = node
        handlers = RequestHandlers(node)
        handlers.register(JOB_PROTOCOL, provider.handle)
        if coordinator_addr is not None:
            await node.connect(coordinator_addr)
        node.nursery.start_soon(provider._advertise, AdvertPublisher(node))
        yield provider
