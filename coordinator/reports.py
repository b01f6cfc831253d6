"""The coordinator's side of ``REPORT_PROTOCOL``: commitments, logs, failures, hand-backs.

A report is accepted only when its envelope verifies (signer == the provider it names,
fresh, not replayed) and the chain-backed store lists that provider among the job's
active assignees. A Commitment must also carry the provider's EIP-712 Commit signature in
this market's domain; it is persisted before the acknowledgement goes out.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from coordinator.errors import JobNotFound
from coordinator.signals import Signals
from coordinator.states import JobState, ProviderState
from coordinator.store import AsyncStore, JobRecord, ProviderSlot
from protocol import eip712
from protocol.errors import MessageError
from protocol.identity import Identity
from protocol.ids import PeerId
from protocol.messages import (
    Ack,
    Commitment,
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
    ) -> None:
        self.identity = identity
        self.store = store
        self.signals = signals
        self.domain = domain
        self.reveal_sink = reveal_sink
        self.verifier = Verifier()

    async def handle(self, request: bytes, peer: PeerId) -> bytes:
        """The ``REPORT_PROTOCOL`` handler: a signed report in, a signed Ack out."""
        signed = decode_signed(request, MAX_MESSAGE_BYTES)
        body = self.verifier.open(signed, WireMessage)
        if not isinstance(body, Commitment | LogChunk | FailureReport | HandBack | Reveal):
            raise MessageError(f"{body.message_type} is not a report")
        job, slot = await self._slot(body.job_id, body.provider)
        if isinstance(body, Commitment):
            await self._commitment(job, slot, body)
        elif isinstance(body, LogChunk):
            await self._log(job, slot, body)
        elif isinstance(body, FailureReport | HandBack):
            await self._failure(job, slot, body)
        else:
            if not await self.reveal_sink(job, slot, body):
                raise MessageError("reveal does not open the commitment")
        ack = Ack(sender=self.identity.address, of=body.message_type, job_id=body.job_id)
        return encode_signed(sign_message(ack, self.identity))

    async def _slot(self, job_id: bytes, provider: str) -> tuple[JobRecord, ProviderSlot]:
        key = "0x" + job_id.hex()
        try:
            job = await self.store.get_job(key)
        except JobNotFound as exc:
            raise NotAssigned(f"unknown job {key}") from exc
        for slot in await self.store.slots(key):
            if slot.address == provider and slot.state is not ProviderState.PLANNED:
                return job, slot
        raise NotAssigned(f"{provider} is not assigned to job {key}")

    async def _commitment(self, job: JobRecord, slot: ProviderSlot, body: Commitment) -> None:
        body.verify(self.domain)
        digest = "0x" + body.commit_hash.hex()
        if slot.commit_hash is not None:
            if slot.commit_hash != digest:
                raise MessageError("a different commitment was already accepted")
            return  # a retried delivery
        if not slot.active:
            raise NotAssigned(f"{slot.address} was replaced on job {job.job_id}")
        if job.state.final or job.state in (JobState.REVEALED, JobState.FAILED):
            raise MessageError(f"job {job.job_id} is {job.state}; commitments are closed")
        await self.store.update_slot(
            job.job_id,
            slot.idx,
            state=ProviderState.COMMITTED,
            commit_hash=digest,
            commit_sig="0x" + body.signature.hex(),
        )
        log.info("job %s: commitment from %s", job.job_id[:18], slot.address)
        self.signals.fire(job.job_id)

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
        if slot.commit_hash is not None:
            return  # a commitment binds; only its reveal (or its absence) counts now
        reason = body.reason if isinstance(body, HandBack) else f"{body.kind}: {body.detail}"
        await self.store.update_slot(
            job.job_id,
            slot.idx,
            state=ProviderState.FAILED,
            detail=f"{body.message_type}: {reason}"[:1000],
        )
        if isinstance(body, FailureReport) and not body.kind.provider_fault:
            # The job's own code or data failed: record it for the requester to see.
            await self.store.update_job(
                job.job_id, failure_reason=reason[:1000], failure_provider=slot.address
            )
        log.info("job %s: %s reported %s", job.job_id[:18], slot.address, reason)
        self.signals.fire(job.job_id)
