"""The coordinator's side of ``REPORT_PROTOCOL``: commitments, reveals, logs, failures.

A report is accepted only when the chain-backed store lists the provider it names among
the job's seats (checked first: it costs no signature recovery) and its envelope verifies
(signer == that provider, fresh, not replayed). A Commitment must also carry the provider's
EIP-712 Commit signature in this market's domain and arrive by its seat's commit deadline;
it is answered with the coordinator's signed ``CommitReceipt`` (which lets the provider's
on-chain reveal count as a vote), persisted together with the commitment before it goes
out. Every other report is answered with an Ack.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from coordinator.errors import UnknownJob
from coordinator.signals import Signals
from coordinator.store import AsyncStore, JobRecord, ProviderSlot, SeatFailure
from protocol import eip712
from protocol.errors import MessageError
from protocol.identity import Identity
from protocol.ids import Address, JobId, PeerId, job_id_hex
from protocol.lifecycle import SeatState
from protocol.messages import (
    Ack,
    Commitment,
    CommitReceipt,
    FailureReport,
    HandBack,
    LogChunk,
    Reveal,
    WireMessage,
)
from protocol.registry import MAX_MESSAGE_BYTES
from protocol.signing import Verifier, decode_signed, encode_signed, sign_message

log = logging.getLogger(__name__)

MAX_LINE_CHARS = 4096
RevealSink = Callable[[JobRecord, ProviderSlot, Reveal], Awaitable[bool]]
Clock = Callable[[], float]
REPORTS = (Commitment, LogChunk, FailureReport, HandBack, Reveal)
UNCOMMITTED = frozenset({SeatState.ASSIGNED, SeatState.RUNNING, SeatState.FAILED})


class NotAssigned(MessageError):
    """The report names a job this provider is not (or no longer) assigned to."""


class ReportHandler:
    def __init__(
        self,
        identity: Identity,
        store: AsyncStore,
        signals: Signals,
        domain: eip712.Eip712Domain,
        reveal_sink: RevealSink,
        chain_now: Clock,
    ) -> None:
        self.identity = identity
        self.store = store
        self.signals = signals
        self.domain = domain
        self.reveal_sink = reveal_sink
        self.chain_now = chain_now
        self.verifier = Verifier()

    async def handle(self, request: bytes, peer: PeerId) -> bytes:
        """The ``REPORT_PROTOCOL`` handler: a signed report in, a signed answer out."""
        signed = decode_signed(request, MAX_MESSAGE_BYTES)
        unverified = signed.body
        if not isinstance(unverified, REPORTS):
            raise MessageError(f"{unverified.message_type} is not a report")
        job, slot = await self._slot(unverified.job_id, unverified.provider)
        body = self.verifier.open(signed, WireMessage)
        assert isinstance(body, REPORTS)
        if isinstance(body, Commitment):
            receipt = await self._commitment(job, slot, body)
            return encode_signed(sign_message(receipt, self.identity))
        if isinstance(body, LogChunk):
            await self._log(job, slot, body)
        elif isinstance(body, FailureReport | HandBack):
            await self._failure(job, slot, body)
        else:
            if not await self.reveal_sink(job, slot, body):
                raise MessageError("reveal does not open the commitment")
        ack = Ack(sender=self.identity.address, of=body.message_type, job_id=body.job_id)
        return encode_signed(sign_message(ack, self.identity))

    async def _slot(self, job_id: bytes, provider: str) -> tuple[JobRecord, ProviderSlot]:
        key = job_id_hex(JobId(job_id))
        try:
            job = await self.store.get_job(key)
        except UnknownJob as exc:
            raise NotAssigned(f"unknown job {key}") from exc
        for slot in await self.store.slots(key):
            if slot.address == provider and slot.state.on_chain:
                return job, slot
        raise NotAssigned(f"{provider} is not assigned to job {key}")

    async def _commitment(
        self, job: JobRecord, slot: ProviderSlot, body: Commitment
    ) -> CommitReceipt:
        body.verify(self.domain)
        digest = "0x" + body.commit_hash.hex()
        if slot.commit_hash is not None:
            if slot.commit_hash != digest:
                raise MessageError("a different commitment was already accepted")
            return self._receipt(job, slot, body)  # a retried delivery: the same receipt
        if job.state.terminal:
            raise MessageError(f"job {job.job_id} is {job.state}; commitments are closed")
        # A seat we gave up on (silent, replaced) still holds its place on chain until its
        # commit deadline: its commitment binds and counts like any other.
        deadline = slot.commit_deadline(job.commit_window)
        if deadline is None or self.chain_now() > deadline:
            raise MessageError(f"seat {slot.idx} of {job.job_id} is past its commit deadline")
        receipt = self._receipt(job, slot, body)
        await self.store.update_slot(
            job.job_id,
            slot.idx,
            state=SeatState.COMMITTED,
            commit_hash=digest,
            commit_sig="0x" + body.signature.hex(),
            receipt_sig="0x" + receipt.signature.hex(),
        )
        log.info("job %s: commitment from %s", job.job_id[:18], slot.address)
        self.signals.fire(job.job_id)
        return receipt

    def _receipt(self, job: JobRecord, slot: ProviderSlot, body: Commitment) -> CommitReceipt:
        """This coordinator's signed CommitReceipt for the seat's commitment."""
        signature = eip712.sign_receipt(
            self.identity.private_key,
            self.domain,
            body.job_id,
            body.provider,
            slot.idx,
            body.commit_hash,
        )
        return CommitReceipt(
            job_id=body.job_id,
            provider=body.provider,
            coordinator=Address(self.identity.address),
            seat=slot.idx,
            commit_hash=body.commit_hash,
            signature=signature,
        )

    async def _log(self, job: JobRecord, slot: ProviderSlot, body: LogChunk) -> None:
        text = body.data.decode("utf-8", "replace")
        for line in text.splitlines():
            if not await self.store.add_log(
                job.job_id, slot.address, f"[{body.stream}] {line[:MAX_LINE_CHARS]}"
            ):
                break
        self.signals.fire(job.job_id + ":logs")

    async def _failure(
        self, job: JobRecord, slot: ProviderSlot, body: FailureReport | HandBack
    ) -> None:
        reason = body.reason if isinstance(body, HandBack) else f"{body.kind}: {body.detail}"
        if slot.committed:
            # A commitment binds: only its reveal (or its absence) counts now. A job that
            # failed by its own fault was committed as the canonical failure output; keep the
            # provider's account of why, for the requester (never overwriting an earlier one).
            own_fault = isinstance(body, FailureReport) and not body.kind.provider_fault
            if own_fault and job.failure_reason is None:
                await self.store.update_job(
                    job.job_id, failure_reason=reason[:1000], failure_provider=slot.address
                )
                self.signals.fire(job.job_id)
            return
        job_fault = isinstance(body, FailureReport) and not body.kind.provider_fault
        await self.store.update_slot(
            job.job_id,
            slot.idx,
            only_if=UNCOMMITTED,
            state=SeatState.FAILED,
            detail=f"{body.message_type}: {reason}"[:1000],
            # whose fault, for its reputation (a hand-back is the provider's choice)
            failure=SeatFailure.JOB if job_fault else SeatFailure.FAULT,
        )
        if job_fault:
            # The job's own code or data failed: record it for the requester to see.
            await self.store.update_job(
                job.job_id, failure_reason=reason[:1000], failure_provider=slot.address
            )
        log.info("job %s: %s reported %s", job.job_id[:18], slot.address, reason)
        self.signals.fire(job.job_id)
