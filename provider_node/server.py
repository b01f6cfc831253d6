"""The provider's side of ``JOB_PROTOCOL``: offers, assignments, reveal requests, cancels.

Every request is a signed envelope. A ``JobOffer`` signed by its coordinator is answered by
the :class:`~provider_node.offers.OfferDesk` with an ``Accept`` or a ``Decline``. An
Assignment is acted on only when its signer is the coordinator the chain names for the job,
the chain seats this provider at the Assignment's seat and price, and that seat and price
are the ones this provider accepted (when it still remembers the accept: the chain, which
seats nobody without its signed consent, is the authority after a restart). Reveal
requests and cancels must come from the same coordinator. Replies are signed too: an
``Ack``, ``Accept``/``Decline``, the ``Reveal``, or an ``ErrorReply`` whose code says why.
Accepted jobs run as tasks in the server's nursery, at most ``max_concurrent`` at once; up to
``max_queued`` more wait for a free slot (a coordinator queues jobs at a busy provider as
soon as no slot is free elsewhere; a queued job whose commit deadline comes too close is
handed back by the worker, one cancelled or caught by a shutdown while it waits never
runs). Every job is handed to the :class:`~provider_node.fallback.ChainFallback` to watch.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, cast

import trio

from contracts.errors import JobNotFound
from contracts.models import JobStatus
from protocol.errors import ChainError, GpuMarketError, MessageError, SignatureError
from protocol.identity import Identity
from protocol.ids import JobId, PeerId
from protocol.ipfs.cid import result_digest
from protocol.messages import (
    Accept,
    Ack,
    Assignment,
    Cancel,
    Decline,
    ErrorCode,
    ErrorReply,
    FailureKind,
    FailureReport,
    JobOffer,
    Message,
    RevealRequest,
    WireMessage,
)
from protocol.replay import ReplayError
from protocol.signing import ExpiredError, SignedMessage, Verifier, decode_signed, encode_signed
from protocol.signing import sign_message as sign
from provider_node.fallback import ChainFallback
from provider_node.jobstore import JobStore, LocalJob, LocalPhase
from provider_node.offers import Load, OfferDesk
from provider_node.reporter import Reporter, deliver
from provider_node.staking import ProviderChain
from provider_node.worker import JobWorker, RevealError

log = logging.getLogger(__name__)

ReporterFactory = Callable[[PeerId], Reporter]


class Refused(GpuMarketError):
    """A request this provider declines, with the code to answer."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        self.code = code
        super().__init__(message)


def _code_of(exc: GpuMarketError) -> ErrorCode:
    if isinstance(exc, Refused):
        return exc.code
    if isinstance(exc, SignatureError):
        return ErrorCode.BAD_SIGNATURE
    if isinstance(exc, ExpiredError):
        return ErrorCode.EXPIRED
    if isinstance(exc, ReplayError):
        return ErrorCode.REPLAYED
    if isinstance(exc, MessageError):
        return ErrorCode.MALFORMED
    return ErrorCode.INTERNAL


class JobServer:
    """Handles ``JOB_PROTOCOL`` requests and owns the tasks of accepted jobs."""

    def __init__(
        self,
        identity: Identity,
        chain: ProviderChain,
        worker: JobWorker,
        jobs: JobStore,
        reporter_for: ReporterFactory,
        *,
        max_concurrent: int = 1,
        max_queued: int = 0,
        verifier: Verifier | None = None,
        offers: OfferDesk | None = None,
        fallback: ChainFallback | None = None,
    ) -> None:
        self.identity = identity
        self.chain = chain
        self.worker = worker
        self.jobs = jobs
        self.reporter_for = reporter_for
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self._slots = trio.CapacityLimiter(max_concurrent)
        self._queued: dict[JobId, trio.CancelScope] = {}
        """Jobs waiting for a slot, and the scope that stops the wait."""
        self.verifier = verifier or Verifier()
        self.offers = offers
        """Answers job offers; without one, offers are refused as unsupported."""
        self.fallback = fallback
        self.accepting = True
        self.completed: dict[str, int] = {}
        """Finished runs by final phase (for metrics)."""
        self._active: set[JobId] = set()
        self._handing_back: set[JobId] = set()
        self._nursery: trio.Nursery | None = None
        self._nursery_cm = trio.open_nursery()

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def address(self) -> str:
        return self.identity.address

    async def __aenter__(self) -> JobServer:
        self._nursery = await self._nursery_cm.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        return await self._nursery_cm.__aexit__(exc_type, exc, tb)

    # ----------------------------------------------------------------- requests
    async def handle(self, request: bytes, peer: PeerId) -> bytes:
        """The ``JOB_PROTOCOL`` handler: one signed request in, one signed reply out."""
        job_id: JobId | None = None
        of: str | None = None
        try:
            signed = decode_signed(request)
            of, job_id = signed.body.message_type, getattr(signed.body, "job_id", None)
            reply = await self._dispatch(signed, peer)
        except GpuMarketError as exc:
            level = logging.ERROR if isinstance(exc, ChainError) else logging.INFO
            log.log(level, "refused %s from %s: %s", of or "a request", peer, exc)
            reply = ErrorReply(
                sender=self.identity.address,
                code=_code_of(exc),
                message=str(exc)[:1000],
                of=of,
                job_id=job_id,
            )
        return encode_signed(sign(cast(Message, reply), self.identity))

    async def _dispatch(self, signed: SignedMessage, peer: PeerId) -> WireMessage:
        body = signed.body
        if isinstance(body, JobOffer):
            return await self._on_offer(signed, body)
        if isinstance(body, Assignment):
            return await self._on_assignment(signed, body, peer)
        if isinstance(body, RevealRequest):
            return await self._on_reveal(signed, body)
        if isinstance(body, Cancel):
            return await self._on_cancel(signed, body)
        raise Refused(ErrorCode.UNSUPPORTED, f"{body.message_type} is not a job request")

    def _ack(self, body: WireMessage, job_id: JobId) -> Ack:
        return Ack(sender=self.identity.address, of=body.message_type, job_id=job_id)

    def _check_addressed(self, provider: str) -> None:
        if provider != self.identity.address:
            raise Refused(
                ErrorCode.NOT_ASSIGNED, f"addressed to {provider}, this is {self.address}"
            )

    async def _on_offer(self, signed: SignedMessage, body: JobOffer) -> Accept | Decline:
        self._check_addressed(body.provider)
        self.verifier.open(signed, JobOffer, signer=body.coordinator)
        if self.offers is None:
            raise Refused(ErrorCode.UNSUPPORTED, "this provider takes no offers")
        load = Load(
            running=len(self._active),
            max_concurrent=self.max_concurrent,
            max_queued=self.max_queued,
            gpus_total=self.worker.gpus.total,
            accepting=self.accepting,
            holds_job=self.jobs.load(body.job_id) is not None,
        )
        return await self.offers.answer(body, load)

    async def _on_assignment(self, signed: SignedMessage, body: Assignment, peer: PeerId) -> Ack:
        self._check_addressed(body.provider)
        job_id = body.job_id
        if not self.accepting:
            raise Refused(ErrorCode.BUSY, "shutting down, not taking jobs")
        try:
            job = await trio.to_thread.run_sync(self.chain.get_job, job_id)
        except JobNotFound as exc:
            raise Refused(ErrorCode.UNKNOWN_JOB, f"no job 0x{job_id.hex()} on chain") from exc
        if job.status is JobStatus.NONE:
            raise Refused(ErrorCode.UNKNOWN_JOB, f"no job 0x{job_id.hex()} on chain")
        existing = self.jobs.load(job_id)
        try:
            self.verifier.open(signed, Assignment, signer=job.coordinator)
        except ReplayError:
            if existing is not None:  # a retried delivery of what was accepted
                return self._ack(body, job_id)
            raise
        if existing is not None:
            return self._ack(body, job_id)
        if job.status is not JobStatus.ASSIGNED:
            raise Refused(ErrorCode.WRONG_STATE, f"job is {job.status.name.lower()} on chain")
        seats = job.seats
        seat = seats[body.seat] if body.seat < len(seats) else None
        if seat is None or seat.provider != self.address or seat.price != body.price:
            raise Refused(
                ErrorCode.NOT_ASSIGNED,
                f"the chain does not seat this provider at seat {body.seat} for {body.price}",
            )
        accepted = self.offers.book.get(job_id) if self.offers is not None else None
        if accepted is not None and (accepted.seat, accepted.price) != (body.seat, body.price):
            raise Refused(
                ErrorCode.NOT_ASSIGNED,
                f"this provider accepted seat {accepted.seat} at {accepted.price}, "
                f"not seat {body.seat} at {body.price}",
            )
        if result_digest(body.spec_cid) != job.spec_digest:
            raise Refused(ErrorCode.NOT_ASSIGNED, f"spec {body.spec_cid} is not the job's spec")
        if len(self._active) >= self.max_concurrent + self.max_queued:
            raise Refused(ErrorCode.BUSY, f"holding {len(self._active)} jobs already")
        record = LocalJob(
            job_id=job_id,
            phase=LocalPhase.ASSIGNED,
            assignment=signed,
            coordinator_peer=peer,
            commit_deadline=job.terms.commit_deadline(seat),
            commit_window=job.terms.commit_window,
        )
        self.jobs.save(record)
        if self.offers is not None:
            self.offers.book.pop(job_id)
        self.start(record)
        log.info("job 0x%s: seat %d from %s", job_id.hex(), body.seat, body.coordinator)
        return self._ack(body, job_id)

    async def _on_reveal(self, signed: SignedMessage, body: RevealRequest) -> WireMessage:
        self._check_addressed(body.provider)
        record = self.jobs.load(body.job_id)
        if record is None:
            raise Refused(ErrorCode.UNKNOWN_JOB, f"no job 0x{body.job_id.hex()} here")
        self.verifier.open(signed, RevealRequest, signer=record.coordinator)
        if record.phase not in (LocalPhase.COMPUTED, LocalPhase.COMMITTED, LocalPhase.REVEALED):
            raise Refused(ErrorCode.WRONG_STATE, f"job is {record.phase}, nothing to reveal")
        try:
            _, reveal = await self.worker.reveal(record)
        except RevealError as exc:
            report = FailureReport(
                job_id=record.job_id,
                provider=self.identity.address,
                kind=FailureKind.SANDBOX_ERROR,
                detail=f"cannot reveal: {exc}"[:1000],
            )
            reporter = self.reporter_for(record.coordinator_peer)
            self._spawn(f"report-{record.job_id.hex()[:12]}", deliver, reporter, report)
            raise Refused(ErrorCode.INTERNAL, str(exc)) from exc
        log.info("job 0x%s: revealed %s", record.job_id.hex(), reveal.result_cid)
        return reveal

    async def _on_cancel(self, signed: SignedMessage, body: Cancel) -> Ack:
        self._check_addressed(body.provider)
        record = self.jobs.load(body.job_id)
        if record is None:
            raise Refused(ErrorCode.UNKNOWN_JOB, f"no job 0x{body.job_id.hex()} here")
        self.verifier.open(signed, Cancel, signer=record.coordinator)
        log.info("job 0x%s: cancelled by the coordinator: %s", body.job_id.hex(), body.reason)
        waiting = self._queued.get(body.job_id)
        if waiting is not None:
            waiting.cancel()
        if not self.worker.cancel(body.job_id) and not record.phase.terminal:
            cancelled = record.advance(LocalPhase.CANCELLED, detail=body.reason[:1000])
            self.jobs.save(cancelled)
            await self.worker.clean(cancelled)
        return self._ack(body, body.job_id)

    # -------------------------------------------------------------------- tasks
    def start(self, record: LocalJob) -> None:
        """Run an accepted job in the background."""
        assert self._nursery is not None, "use the server inside `async with`"
        self._active.add(record.job_id)
        if self.fallback is not None:
            self.fallback.watch(record.job_id)
        self._nursery.start_soon(self._run_job, record, name=f"job-{record.job_id.hex()[:12]}")

    def _spawn(self, name: str, work: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Run ``work(*args)`` in the background as the task ``name``, contained: an error in
        it is logged and ends that task only, never the running jobs beside it."""
        assert self._nursery is not None, "use the server inside `async with`"
        self._nursery.start_soon(self._contained, name, work, *args, name=name)

    @staticmethod
    async def _contained(name: str, work: Callable[..., Awaitable[object]], *args: Any) -> None:
        try:
            await work(*args)
        except Exception:
            log.exception("%s: background task crashed", name)

    async def _run_job(self, record: LocalJob) -> None:
        reporter = self.reporter_for(record.coordinator_peer)
        try:
            with trio.CancelScope() as waiting:
                self._queued[record.job_id] = waiting
                await self._slots.acquire()
            self._queued.pop(record.job_id, None)
            if waiting.cancelled_caught:
                await self._never_ran(record, reporter)
                return
            try:
                await self._run_in_slot(record, reporter)
            finally:
                self._slots.release()
        finally:
            self._queued.pop(record.job_id, None)
            self._active.discard(record.job_id)
            self._handing_back.discard(record.job_id)

    async def _never_ran(self, record: LocalJob, reporter: Reporter) -> None:
        """A queued job cancelled while it waited: handed back when the provider is shutting
        down (the Cancel path recorded a cancel itself)."""
        latest = self.jobs.load(record.job_id) or record
        if record.job_id in self._handing_back and not latest.phase.terminal:
            await self.worker.hand_back(latest, reporter, "the provider is shutting down")

    async def _run_in_slot(self, record: LocalJob, reporter: Reporter) -> None:
        try:
            latest = self.jobs.load(record.job_id) or record
            if latest.phase.terminal:  # cancelled while it waited for the slot
                return
            final = await self.worker.run(latest, reporter)
            if final.phase is LocalPhase.CANCELLED and record.job_id in self._handing_back:
                final = await self.worker.hand_back(
                    final, reporter, "the provider is shutting down"
                )
            self.completed[final.phase] = self.completed.get(final.phase, 0) + 1
        except Exception as exc:
            # A bug in this daemon must not kill it, nor leave the job silently dead.
            log.exception("job 0x%s: worker crashed", record.job_id.hex())
            report = FailureReport(
                job_id=record.job_id,
                provider=self.identity.address,
                kind=FailureKind.SANDBOX_ERROR,
                detail=f"provider error: {type(exc).__name__}",
            )
            failed = record.advance(LocalPhase.FAILED, detail=report.detail)
            self.jobs.save(failed)
            await self.worker.clean(failed)
            await deliver(reporter, report, attempts=3)

    async def resume(self) -> None:
        """Pick up records left by a previous run of this daemon.

        A job committed-to but not acknowledged (or without a receipt) gets its commitment
        again; a job that was running when the daemon stopped is handed back (its run is
        gone); a finished job whose run dir outlived it (a stop between the two) loses the
        run dir. Jobs that may still need the chain go to the fallback's watch list.
        """
        if self.fallback is not None:
            self.fallback.watch_records()
        for record in self.jobs.all():
            reporter = self.reporter_for(record.coordinator_peer)
            unreceipted = (
                record.phase is LocalPhase.COMMITTED
                and record.receipt_signature is None
                and not record.committed_on_chain
            )
            if record.phase.terminal:
                await self.worker.clean(record)
            elif record.phase is LocalPhase.COMPUTED or unreceipted:
                name = f"commit-{record.job_id.hex()[:12]}"
                self._spawn(name, self.worker.send_commitment, record, reporter)
            elif record.phase in (LocalPhase.ASSIGNED, LocalPhase.RUNNING):
                why = "the provider restarted mid-run"
                name = f"hand-back-{record.job_id.hex()[:12]}"
                self._spawn(name, self.worker.hand_back, record, reporter, why)

    async def drain(self, grace_s: float) -> None:
        """Stop taking jobs; let running ones finish for ``grace_s``, then hand them back."""
        self.accepting = False
        with trio.move_on_after(grace_s):
            while self._active:
                await trio.sleep(0.1)
        leftover = set(self._active)
        for job_id in leftover:
            self._handing_back.add(job_id)
            waiting = self._queued.get(job_id)
            if waiting is not None:
                waiting.cancel()
            self.worker.cancel(job_id)
        with trio.move_on_after(30):
            while self._active:
                await trio.sleep(0.1)
