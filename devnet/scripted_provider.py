"""A scripted provider for coordinator tests and the market simulator: real signatures,
fake work.

It answers ``JOB_PROTOCOL``: a JobOffer with its signed EIP-712 Accept (over the job's
terms read from ``chain``) or a Decline, an Assignment with an Ack, a RevealRequest with its
Reveal; after accepting an assignment it sends a signed Commitment as a report and keeps the
coordinator's CommitReceipt. ``result`` picks its answer (providers with equal ``result``
agree) and ``runtime_ms`` the runtime it reports; ``silent`` makes it ignore assignments,
the way a hung provider would; ``fail_with`` makes it report a failed run instead of
committing; ``decline`` declines every offer with that reason (``busy`` marks it busy);
``forge_accept`` signs its Accept with another key; ``withhold`` commits but never reveals.
With ``max_jobs`` it runs at most that many jobs at once and declines more as busy; with
``max_queued`` as well it holds up to that many more waiting for a slot, and counts each
offer it accepted and was not assigned yet against them, as the real provider does. With
``hold`` a run ends only when :meth:`FakeProvider.finish` lets it (the test moves time).

A ``strategy`` decides per assignment (:class:`ScriptedJob`): the result digest and runtime to
commit (or another commitment to copy), whether to answer reveal requests (always, never,
or only while it holds the job's only seat), and whether to post its reveal on chain
itself once reveals open (:meth:`FakeProvider.post_reveals`, called by whoever moves time).

Reports go to ``report`` when set (an in-process coordinator, as the unit tests use) or
over libp2p to the coordinator's peer (:func:`run_provider`, as the devnet tests use).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import trio

from contracts.client import ChainClient
from contracts.models import JobStatus
from protocol import eip712
from protocol.identity import Identity
from protocol.ids import Cid, JobId, PeerId, Wei
from protocol.messages import (
    Accept,
    Ack,
    Advert,
    Assignment,
    Benchmark,
    Cancel,
    Commitment,
    CommitReceipt,
    Decline,
    ErrorCode,
    ErrorReply,
    FailureKind,
    FailureReport,
    Fingerprint,
    JobOffer,
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

ReportSink = Callable[[bytes, PeerId], Awaitable[bytes]]
OTHER_KEY = bytes.fromhex("77" * 32)
RevealPolicy = Literal["answer", "refuse", "refuse_if_checked"]


@dataclass(frozen=True)
class ScriptedJob:
    """What a scripted provider does on one job (``None``: its fixed ``result`` and
    ``runtime_ms``)."""

    digest: bytes | None = None
    """The 32-byte result digest it commits and reveals."""
    runtime_ms: int | None = None
    reveal: RevealPolicy = "answer"
    """``refuse_if_checked``: refuse reveal requests once the job has a second seat."""
    reveal_on_chain: bool = False
    """Post its reveal on chain (with the coordinator's receipt) once reveals open."""
    commit_on_chain: bool = False
    """Also commit on chain right after committing off chain."""
    commit_hash: bytes | None = None
    """Send this commitment instead of its own (a copied one it cannot open)."""


Strategy = Callable[["FakeProvider", Assignment], ScriptedJob]
"""Decides a provider's :class:`ScriptedJob` when an assignment arrives."""


@dataclass
class FakeProvider:
    identity: Identity
    domain: eip712.Eip712Domain
    chain: ChainClient | None = None
    result: bytes = b"honest"
    runtime_ms: int = 1_000
    silent: bool = False
    price_per_hour: int = 1_000_000
    node: Node | None = None
    nursery: trio.Nursery | None = None
    report: ReportSink | None = None
    offers: list[JobOffer] = field(default_factory=list)
    assignments: list[Assignment] = field(default_factory=list)
    cancels: list[Cancel] = field(default_factory=list)
    salts: dict[bytes, bytes] = field(default_factory=dict)
    receipts: dict[bytes, CommitReceipt] = field(default_factory=dict)
    seq: int = 0
    commit_delay_s: float = 0.2
    max_jobs: int = 0  # 0: no limit
    max_queued: int = 0
    running: set[bytes] = field(default_factory=set)
    """Jobs assigned here and not committed yet: in a slot, or queued for one."""
    accepted: dict[bytes, int] = field(default_factory=dict)
    """Accepted offers not assigned yet, by job: their expiry (chain time)."""
    hold: bool = False
    finished: int = 0
    _slots: trio.CapacityLimiter | None = None
    _done: trio.Semaphore | None = None
    busy_refusals: int = 0
    fail_with: tuple[FailureKind, str] | None = None  # report this failure, not a result
    decline: str | None = None
    busy: bool = False
    forge_accept: bool = False
    withhold: bool = False
    strategy: Strategy | None = None
    plans: dict[bytes, ScriptedJob] = field(default_factory=dict)
    posted: set[bytes] = field(default_factory=set)
    """Jobs whose reveal it posted on chain."""

    @property
    def address(self) -> str:
        return self.identity.address

    def result_cid(self) -> Cid:
        return eip712.digest_to_cid(hashlib.sha256(self.result).digest())

    def digest(self) -> bytes:
        return eip712.cid_to_result_digest(self.result_cid())

    def plan(self, job_id: bytes) -> ScriptedJob:
        return self.plans.get(bytes(job_id)) or ScriptedJob()

    def digest_for(self, job_id: bytes) -> bytes:
        """The digest it commits for ``job_id`` (its plan's, else its fixed result's)."""
        return self.plan(job_id).digest or self.digest()

    def runtime_for(self, job_id: bytes) -> int:
        runtime = self.plan(job_id).runtime_ms
        return self.runtime_ms if runtime is None else runtime

    def advert(self, multiaddrs: tuple[str, ...] = ()) -> Advert:
        self.seq += 1
        return Advert(
            provider=self.identity.address,
            peer_id=self.identity.peer_id,
            multiaddrs=tuple(self.node.addrs) if self.node is not None else multiaddrs,
            gpus=(),
            benchmark=Benchmark(tflops={"fp32": 0.5}, memory_bandwidth_gbps=10.0),
            fingerprint=Fingerprint(backend="cpu", gpu_model="cpu", torch="2.13.0"),
            price_per_gpu_hour=Wei(self.price_per_hour),
            price_per_cpu_hour=Wei(self.price_per_hour),
            free_gpus=0,
            utilization=min(1.0, len(self.running) / self.max_jobs) if self.max_jobs else 0.0,
            runtimes=("torch",),
            software={"gpumarket": "test"},
            seq=self.seq,
            expires_at=int(time.time()) + 30,
            max_queued=self.max_queued or None,
        )

    def _sign(self, body: Message) -> bytes:
        return encode_signed(sign_message(body, self.identity))

    def _full(self, job_id: bytes) -> bool:
        known = any(a.job_id == job_id for a in self.assignments)
        if known or self.max_jobs <= 0:
            return False
        if self.chain is not None and self.accepted:
            now = self.chain.now()
            self.accepted = {j: e for j, e in self.accepted.items() if e >= now}
        reserved = sum(1 for j in self.accepted if j != bytes(job_id))
        return len(self.running) + reserved >= self.max_jobs + self.max_queued

    def finish(self, runs: int = 1) -> None:
        """Let ``runs`` more held runs end (``hold``)."""
        for _ in range(runs):
            self._semaphore().release()

    def _semaphore(self) -> trio.Semaphore:
        if self._done is None:
            self._done = trio.Semaphore(0)
        return self._done

    async def handle(self, data: bytes, peer: PeerId) -> bytes:
        body = decode_signed(data).body
        reply: Message
        if isinstance(body, JobOffer):
            reply = await self._answer_offer(body)
        elif isinstance(body, Assignment):
            if self.silent:
                await trio.sleep_forever()
            if self._full(body.job_id):
                self.busy_refusals += 1
                reply = ErrorReply(
                    sender=self.identity.address,
                    code=ErrorCode.BUSY,
                    message=f"running {len(self.running)} jobs already",
                )
                return self._sign(reply)
            if not any(a.job_id == body.job_id for a in self.assignments):
                if self.strategy is not None:
                    self.plans[bytes(body.job_id)] = self.strategy(self, body)
                self.running.add(bytes(body.job_id))
                self.accepted.pop(bytes(body.job_id), None)
                self.assignments.append(body)
                self._start(self._commit, body, peer)
            reply = Ack(sender=self.identity.address, of=body.message_type, job_id=body.job_id)
        elif isinstance(body, RevealRequest):
            salt = self.salts.get(bytes(body.job_id))
            if salt is None or self.withhold or self._refuses_reveal(body.job_id):
                reply = ErrorReply(
                    sender=self.identity.address, code=ErrorCode.WRONG_STATE, message="no"
                )
            else:
                reply = self.reveal(body.job_id)
        elif isinstance(body, Cancel):
            self.cancels.append(body)
            reply = Ack(sender=self.identity.address, of=body.message_type, job_id=body.job_id)
        else:
            reply = ErrorReply(
                sender=self.identity.address, code=ErrorCode.UNSUPPORTED, message="no"
            )
        return self._sign(reply)

    async def _answer_offer(self, offer: JobOffer) -> Accept | Decline:
        self.offers.append(offer)
        if self.decline is not None or self.busy or self._full(offer.job_id):
            reason = self.decline or "no free job slot"
            busy = self.busy or self.decline is None
            return Decline(
                job_id=offer.job_id, provider=self.identity.address, reason=reason, busy=busy
            )
        assert self.chain is not None, "a provider needs the chain to read a job's terms"
        terms = await trio.to_thread.run_sync(self.chain.job_terms, offer.job_id)
        key = OTHER_KEY if self.forge_accept else self.identity.private_key
        signature = eip712.sign_accept(
            key,
            self.domain,
            offer.job_id,
            self.identity.address,
            offer.seat,
            offer.price,
            offer.rate_per_hour,
            terms.terms_hash(),
            offer.expiry,
        )
        self.accepted[bytes(offer.job_id)] = offer.expiry
        return Accept(
            job_id=offer.job_id,
            provider=self.identity.address,
            seat=offer.seat,
            price=offer.price,
            rate_per_hour=offer.rate_per_hour,
            expiry=offer.expiry,
            signature=signature,
        )

    def _refuses_reveal(self, job_id: bytes) -> bool:
        policy = self.plan(job_id).reveal
        if policy == "refuse_if_checked":
            assert self.chain is not None
            return len(self.chain.get_seats(JobId(bytes(job_id)))) > 1
        return policy == "refuse"

    def reveal(self, job_id: JobId) -> Reveal:
        salt = self.salts[bytes(job_id)]
        digest, runtime = self.digest_for(job_id), self.runtime_for(job_id)
        signature = eip712.sign_reveal(
            self.identity.private_key,
            self.domain,
            job_id,
            self.identity.address,
            digest,
            runtime,
            salt,
        )
        return Reveal(
            job_id=job_id,
            provider=self.identity.address,
            result_cid=eip712.digest_to_cid(digest),
            runtime_ms=runtime,
            salt=salt,
            signature=signature,
        )

    def commitment(self, job_id: JobId) -> Commitment:
        salt = hashlib.sha256(self.identity.private_key + job_id).digest()
        self.salts[bytes(job_id)] = salt
        commit = self.plan(job_id).commit_hash or eip712.commit_hash(
            job_id, self.identity.address, self.digest_for(job_id), self.runtime_for(job_id), salt
        )
        signature = eip712.sign_commit(
            self.identity.private_key, self.domain, job_id, self.identity.address, commit
        )
        return Commitment(
            job_id=job_id, provider=self.identity.address, commit_hash=commit, signature=signature
        )

    def _start(self, fn: Callable[..., Awaitable[None]], *args: object) -> None:
        nursery = self.nursery or (self.node.nursery if self.node is not None else None)
        assert nursery is not None, "a provider needs a nursery to work in"
        nursery.start_soon(fn, *args)

    async def _send(self, body: Message, coordinator: PeerId) -> bytes:
        payload = self._sign(body)
        if self.report is not None:
            return await self.report(payload, PeerId(self.identity.peer_id))
        assert self.node is not None
        return await request(self.node, coordinator, REPORT_PROTOCOL, payload)

    async def _commit(self, assignment: Assignment, coordinator: PeerId) -> None:
        if self.max_jobs > 0:
            if self._slots is None:
                self._slots = trio.CapacityLimiter(self.max_jobs)
            async with self._slots:  # at most max_jobs run at once; the rest queue
                await self._run(assignment, coordinator)
        else:
            await self._run(assignment, coordinator)

    async def _run(self, assignment: Assignment, coordinator: PeerId) -> None:
        await trio.sleep(self.commit_delay_s)
        if self.hold:
            await self._semaphore().acquire()
            self.finished += 1
        job_id = JobId(bytes(assignment.job_id))
        body: Commitment | FailureReport = self.commitment(job_id)
        if self.fail_with is not None:
            kind, detail = self.fail_with
            body = FailureReport(
                job_id=job_id, provider=self.identity.address, kind=kind, detail=detail
            )
        if isinstance(body, Commitment) and self.plan(job_id).commit_on_chain:
            assert self.chain is not None
            self.chain.commit_on_chain(job_id, assignment.seat, body.commit_hash)
        for _ in range(400):
            try:
                raw = await self._send(body, coordinator)
            except Exception:
                await trio.sleep(0.5)
                continue
            answer = decode_signed(raw).body
            if isinstance(answer, CommitReceipt):
                answer.verify(self.domain)
                self.receipts[bytes(job_id)] = answer
            break
        self.running.discard(bytes(job_id))

    def post_reveals(self) -> int:
        """Post on chain the reveals its plans keep for the chain, for jobs whose reveal
        window is open now; returns how many it posted."""
        assert self.chain is not None
        posted = 0
        for a in self.assignments:
            key = bytes(a.job_id)
            salt = self.salts.get(key)
            if key in self.posted or salt is None or not self.plan(key).reveal_on_chain:
                continue
            job_id = JobId(key)
            status, _ = self.chain.job_status(job_id)
            if status is not JobStatus.ASSIGNED:
                self.posted.add(key)  # settled (or ended) without it
                continue
            seats = self.chain.get_seats(job_id)
            terms = self.chain.job_terms(job_id)
            now = self.chain.now()
            if not terms.reveal_open(seats) < now <= terms.reveal_close(seats):
                continue
            receipt = self.receipts.get(key)
            self.chain.reveal_on_chain(
                job_id,
                a.seat,
                self.digest_for(key),
                self.runtime_for(key),
                salt,
                receipt_signature=receipt.signature if receipt is not None else b"",
            )
            self.posted.add(key)
            posted += 1
        return posted

    async def _advertise(self, publisher: AdvertPublisher) -> None:
        while True:
            await publisher.publish(sign_message(self.advert(), self.identity))
            await trio.sleep(0.5)


@asynccontextmanager
async def run_provider(
    provider: FakeProvider, coordinator_addr: str | None
) -> AsyncIterator[FakeProvider]:
    """Serve ``provider`` over libp2p, advertising on gossipsub (devnet tests)."""
    async with open_host(provider.identity.private_key) as node:
        provider.node = node
        handlers = RequestHandlers(node)
        handlers.register(JOB_PROTOCOL, provider.handle)
        if coordinator_addr is not None:
            await node.connect(coordinator_addr)
        node.nursery.start_soon(provider._advertise, AdvertPublisher(node))
        yield provider


__all__ = ["FakeProvider", "RevealPolicy", "ScriptedJob", "Strategy", "run_provider"]
