"""One job's life on a provider: fetch, run, hash, commit; later reveal.

:meth:`JobWorker.run` never raises for anything a job or its inputs do: every failure ends
as a signed :class:`FailureReport` (or a :class:`HandBack` when the provider cannot take
the job), and the record on disk says so. Commit before publishing: the outputs' CID is
computed locally, the salt and CID are persisted, the Commitment is sent, and only a
:class:`RevealRequest` adds the outputs to IPFS (:meth:`JobWorker.reveal`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from proofs.commitment import new_salt
from protocol import eip712
from protocol.clock import SYSTEM_CLOCK, Clock
from protocol.errors import ContentError, GpuMarketError, SandboxError, SpecError
from protocol.identity import Identity
from protocol.ids import JobId
from protocol.ipfs.cid import normalize_cid, result_digest
from protocol.ipfs.store import ContentStore
from protocol.messages import (
    Assignment,
    Commitment,
    FailureKind,
    FailureReport,
    HandBack,
    Reveal,
)
from protocol.registry import MAX_SPEC_BYTES, MAX_TEXT_CHARS
from provider_node.gpus import GpuPool
from provider_node.jobplan import JobPlan, parse_plan
from provider_node.jobstore import JobRecord, JobStore, Phase
from provider_node.logstream import LogLimits, open_log_stream
from provider_node.metrics import ProviderMetrics
from provider_node.reporter import Reporter, deliver
from provider_node.runtimes import Limits, Outcome, PreparedJob, Runtime
from provider_node.runtimes.model import OUTPUTS_DIR
from provider_node.workdir import (
    entrypoint_for,
    fetch_inputs,
    outputs_cid,
    remove_tree,
)

log = logging.getLogger(__name__)

_OUTCOME_KIND = {
    Outcome.NONZERO_EXIT: FailureKind.NONZERO_EXIT,
    Outcome.TIMEOUT: FailureKind.TIMEOUT,
    Outcome.OOM: FailureKind.OOM,
    Outcome.OUTPUT_TOO_LARGE: FailureKind.OUTPUT_TOO_LARGE,
    Outcome.SANDBOX_ERROR: FailureKind.SANDBOX_ERROR,
    Outcome.PIDS_LIMIT: FailureKind.PIDS_LIMIT,
    Outcome.OUTPUT_REFUSED: FailureKind.OUTPUT_REFUSED,
    Outcome.KILLED: FailureKind.KILLED,
}


class RevealError(ContentError):
    """The outputs cannot be revealed as committed (missing, or a different CID in IPFS)."""


@dataclass(frozen=True)
class WorkerConfig:
    """Provider-side bounds applied to every job, whatever its spec asks."""

    max_input_bytes: int = 1 << 30
    max_output_bytes: int = 1 << 30
    memory_bytes: int = 8 << 30
    max_pids: int = 512
    max_timeout_s: float = 24 * 3600.0
    commit_margin_s: float = 5.0
    """Wall time is cut so the commitment can still be sent before the commit deadline."""
    logs: LogLimits = field(default_factory=LogLimits)


class _Failed(Exception):
    """Internal: ends a run with a failure report (or a hand-back)."""

    def __init__(self, kind: FailureKind | None, detail: str, exit_code: int | None = None):
        super().__init__(detail)
        self.kind = kind  # None: hand the job back instead of reporting a failure
        self.detail = detail
        self.exit_code = exit_code


def _text(detail: str) -> str:
    return detail[:MAX_TEXT_CHARS]


class JobWorker:
    """Runs assigned jobs and reveals their results; one instance serves every job."""

    def __init__(
        self,
        identity: Identity,
        store: ContentStore,
        runtime: Runtime,
        jobs: JobStore,
        domain: eip712.Eip712Domain,
        gpus: GpuPool,
        config: WorkerConfig | None = None,
        clock: Clock = SYSTEM_CLOCK,
        metrics: ProviderMetrics | None = None,
    ) -> None:
        self.identity = identity
        self.store = store
        self.runtime = runtime
        self.jobs = jobs
        self.domain = domain
        self.gpus = gpus
        self.config = config or WorkerConfig()
        self.clock = clock
        self.metrics = metrics
        self._scopes: dict[JobId, trio.CancelScope] = {}
        self._reveal_lock = trio.Lock()

    # ------------------------------------------------------------------ running
    @property
    def running(self) -> list[JobId]:
        return list(self._scopes)

    def cancel(self, job_id: JobId) -> bool:
        """Stop a running job; True when one was running."""
        scope = self._scopes.get(job_id)
        if scope is None:
            return False
        scope.cancel()
        return True

    async def run(self, record: JobRecord, reporter: Reporter) -> JobRecord:
        """Run an assigned job up to its commitment; returns the final record."""
        assignment = record.assignment.body
        assert isinstance(assignment, Assignment)
        job_id = record.job_id
        scope = trio.CancelScope()
        self._scopes[job_id] = scope
        try:
            with scope:
                record = self._save(record.advance(Phase.RUNNING))
                try:
                    result_cid = await self._execute(record, assignment, reporter)
                except _Failed as failed:
                    return await self._fail(record, reporter, failed)
                return await self._commit(record, result_cid, reporter)
            # Cancelled (Cancel message or shutdown): the caller decides what to report.
            latest = self.jobs.load(job_id) or record
            if latest.phase in (Phase.ASSIGNED, Phase.RUNNING):
                latest = self._save(latest.advance(Phase.CANCELLED, detail="cancelled"))
            await self.clean(latest)
            return latest
        finally:
            del self._scopes[job_id]

    async def _execute(self, record: JobRecord, assignment: Assignment, reporter: Reporter) -> str:
        plan = await self._plan(assignment)
        run_dir = self.jobs.run_dir(record.job_id)
        await trio.to_thread.run_sync(remove_tree, run_dir)
        try:
            await fetch_inputs(
                self.store, dict(assignment.input_cids), run_dir, self.config.max_input_bytes
            )
            entrypoint = entrypoint_for(plan, run_dir)
        except (ContentError, SpecError) as exc:
            raise _Failed(FailureKind.BAD_INPUT, f"inputs: {exc}") from exc
        wall = self._wall_time(plan, assignment)
        limits = Limits(
            wall_time_s=wall,
            memory_bytes=self.config.memory_bytes,
            max_pids=self.config.max_pids,
            max_output_bytes=min(plan.max_output_bytes, self.config.max_output_bytes),
        )
        address = self.identity.address
        async with open_log_stream(record.job_id, address, reporter, self.config.logs) as stream:
            devices = self.gpus.acquire(plan.gpus)
            if devices is None:
                raise _Failed(None, f"needs {plan.gpus} GPUs, {self.gpus.free} free")
            try:
                job = PreparedJob(
                    job_id=record.job_id.hex(),
                    work_dir=run_dir,
                    entrypoint=entrypoint,
                    limits=limits,
                    seed=assignment.seed,
                    gpus=devices,
                    image=plan.image,
                    on_output=stream.feed,
                )
                log.info("job %s: running in %s", record.job_id.hex(), self.runtime.name)
                try:
                    result = await self.runtime.run(job)
                except SandboxError as exc:
                    raise _Failed(FailureKind.SANDBOX_ERROR, str(exc)) from exc
            finally:
                self.gpus.release(devices)
            if self.metrics is not None:
                self.metrics.job_finished(result.outcome, result.duration_s)
            if stream.fed_bytes == 0:  # a runtime without the live hook: send its tail
                stream.feed(result.log_tail.encode("utf-8", "replace"))
        if result.outcome is not Outcome.OK:
            kind = _OUTCOME_KIND.get(result.outcome, FailureKind.SANDBOX_ERROR)
            detail = f"{result.outcome}: {result.detail}".strip()
            raise _Failed(kind, detail, result.exit_code)
        try:
            return await trio.to_thread.run_sync(outputs_cid, run_dir)
        except (ContentError, OSError) as exc:
            raise _Failed(FailureKind.NONZERO_EXIT, f"outputs cannot be stored: {exc}") from exc

    async def _plan(self, assignment: Assignment) -> JobPlan:
        try:
            data = await self.store.read_bytes(assignment.spec_cid, max_size=MAX_SPEC_BYTES)
            plan = parse_plan(data, assignment.input_cids)
        except (ContentError, SpecError) as exc:
            raise _Failed(FailureKind.BAD_INPUT, f"spec: {exc}") from exc
        if plan.runtime == "container" and self.runtime.name != "docker":
            raise _Failed(
                None, f"container jobs need docker, this provider runs {self.runtime.name}"
            )
        return plan

    def _wall_time(self, plan: JobPlan, assignment: Assignment) -> float:
        wanted = min(plan.timeout_s, self.config.max_timeout_s)
        left = assignment.commit_deadline - self.clock.now() - self.config.commit_margin_s
        if left <= 1:
            raise _Failed(None, "the commit deadline is too close to run the job")
        return min(wanted, left)

    async def _fail(self, record: JobRecord, reporter: Reporter, failed: _Failed) -> JobRecord:
        detail = _text(failed.detail)
        if failed.kind is None:
            log.warning("job %s: handing back: %s", record.job_id.hex(), detail)
            record = self._save(record.advance(Phase.HANDED_BACK, detail=detail))
            body: HandBack | FailureReport = HandBack(
                job_id=record.job_id, provider=self.identity.address, reason=detail
            )
        else:
            log.warning("job %s: failed (%s): %s", record.job_id.hex(), failed.kind, detail)
            record = self._save(record.advance(Phase.FAILED, detail=detail))
            code = failed.exit_code
            body = FailureReport(
                job_id=record.job_id,
                provider=self.identity.address,
                kind=failed.kind,
                detail=detail,
                exit_code=code if code is not None and -255 <= code <= 255 else None,
            )
        await self.clean(record)
        await deliver(reporter, body)
        return record

    # ---------------------------------------------------------------- commitment
    async def _commit(self, record: JobRecord, result_cid: str, reporter: Reporter) -> JobRecord:
        salt = new_salt()
        commit = eip712.commit_hash(result_digest(result_cid), salt)
        signature = eip712.sign_commit(
            self.identity.private_key, self.domain, record.job_id, self.identity.address, commit
        )
        # Persisted before anything leaves this machine: a restart can still reveal.
        record = self._save(
            record.advance(
                Phase.COMPUTED,
                result_cid=normalize_cid(result_cid),
                salt=salt,
                commit_hash=commit,
                commit_signature=signature,
            )
        )
        return await self.send_commitment(record, reporter)

    def commitment(self, record: JobRecord) -> Commitment:
        assert record.commit_hash is not None and record.commit_signature is not None
        return Commitment(
            job_id=record.job_id,
            provider=self.identity.address,
            commit_hash=record.commit_hash,
            signature=record.commit_signature,
        )

    async def send_commitment(self, record: JobRecord, reporter: Reporter) -> JobRecord:
        """(Re)send the persisted commitment; the record moves to COMMITTED once accepted."""
        if await deliver(reporter, self.commitment(record)):
            log.info("job %s: committed to %s", record.job_id.hex(), record.result_cid)
            return self._save(record.advance(Phase.COMMITTED))
        log.warning("job %s: commitment not delivered; kept for a retry", record.job_id.hex())
        return record

    # -------------------------------------------------------------------- reveal
    async def reveal(self, record: JobRecord) -> tuple[JobRecord, Reveal]:
        """Add the outputs to IPFS, check they got the committed CID, sign the Reveal.

        Once revealed, the run dir is removed; asking again signs the same Reveal from the
        record (the outputs are in IPFS by then).
        """
        async with self._reveal_lock:
            record = self.jobs.load(record.job_id) or record
            if record.phase is not Phase.REVEALED:
                await self._publish(record)
                record = self._save(record.advance(Phase.REVEALED))
        await self.clean(record)
        return record, self._signed_reveal(record)

    async def _publish(self, record: JobRecord) -> None:
        if record.phase not in (Phase.COMPUTED, Phase.COMMITTED):
            raise RevealError(f"job {record.job_id.hex()} has no result to reveal ({record.phase})")
        outputs = self.jobs.run_dir(record.job_id) / OUTPUTS_DIR
        if not outputs.is_dir():
            raise RevealError(f"outputs of job {record.job_id.hex()} are gone")
        added = await self.store.add_directory(outputs)
        if normalize_cid(added) != record.result_cid:
            raise RevealError(
                f"IPFS stored the outputs as {added}, not the committed {record.result_cid}"
            )

    def _signed_reveal(self, record: JobRecord) -> Reveal:
        assert record.result_cid is not None and record.salt is not None
        result = result_digest(record.result_cid)
        signature = eip712.sign_reveal(
            self.identity.private_key,
            self.domain,
            record.job_id,
            self.identity.address,
            result,
            record.salt,
        )
        return Reveal(
            job_id=record.job_id,
            provider=self.identity.address,
            result_cid=record.result_cid,
            salt=record.salt,
            signature=signature,
        )

    async def hand_back(self, record: JobRecord, reporter: Reporter, reason: str) -> JobRecord:
        """Give an uncommitted job back to its coordinator."""
        record = self._save(record.advance(Phase.HANDED_BACK, detail=_text(reason)))
        await self.clean(record)
        body = HandBack(job_id=record.job_id, provider=self.identity.address, reason=_text(reason))
        await deliver(reporter, body, attempts=3)
        return record

    async def clean(self, record: JobRecord) -> None:
        """Remove the run dir of a job whose record is terminal (the record stays)."""
        if not record.phase.terminal:
            return
        with trio.CancelScope(shield=True):  # bounded local work; do not leave it half done
            removed = await trio.to_thread.run_sync(self.jobs.remove_run, record.job_id)
        if removed:
            log.info("job %s: run dir removed (%s)", record.job_id.hex(), record.phase)

    def _save(self, record: JobRecord) -> JobRecord:
        self.jobs.save(record)
        return record


def describe(exc: GpuMarketError) -> str:
    return _text(f"{type(exc).__name__}: {exc}")
