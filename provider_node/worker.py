"""One job's life on a provider: fetch, run, hash, commit; later reveal.

:meth:`JobWorker.run` never raises for anything a job or its inputs do: every failure ends
as a signed :class:`FailureReport` (or a :class:`HandBack` when the provider cannot take
the job), and the record on disk says so. A failure that is the job's own fault (see
:mod:`provider_node.failure_output`) is also committed, as the canonical failure output,
so that agreeing providers are paid for the time it ran.

Commit before publishing: the outputs' CID is computed locally, the CID, runtime (measured
here around the sandbox run, in ms) and salt are persisted, the Commitment is sent, and the
coordinator's signed ``CommitReceipt`` is checked and kept (without one, the chain
fallback commits on chain). Only a :class:`RevealRequest` adds the outputs to IPFS
(:meth:`JobWorker.reveal`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import trio

from proofs.commitment import new_salt
from protocol import eip712
from protocol.clock import SYSTEM_CLOCK, Clock
from protocol.errors import ContentError, GpuMarketError, SandboxError, SignatureError, SpecError
from protocol.files import remove_tree
from protocol.identity import Identity
from protocol.ids import JobId
from protocol.ipfs.cid import normalize_cid, result_digest
from protocol.ipfs.fetch import MAX_ENTRIES
from protocol.ipfs.retention import PinRetention
from protocol.ipfs.store import ContentStore
from protocol.messages import (
    Assignment,
    Commitment,
    CommitReceipt,
    FailureKind,
    FailureReport,
    HandBack,
    Message,
    Reveal,
)
from protocol.packages import unmet
from protocol.registry import MAX_SPEC_BYTES, MAX_TEXT_CHARS
from provider_node.failure_output import ExitClass, exit_class_of, write_failure_output
from provider_node.fallback import receipt_margin
from provider_node.gpus import GpuPool
from provider_node.inputcache import InputCache
from provider_node.jobplan import JobPlan, parse_plan
from provider_node.jobstore import JobStore, LocalJob, LocalPhase
from provider_node.logstream import LogLimits, open_log_stream
from provider_node.metrics import ProviderMetrics
from provider_node.reporter import Reporter, deliver
from provider_node.runtimes import (
    CONTAINER_RUNTIMES,
    EngineRuntime,
    PreparedJob,
    RunLimits,
    RunOutcome,
    Runtime,
)
from provider_node.runtimes.images import ImageRefused
from provider_node.runtimes.model import OUTPUTS_DIR
from provider_node.workdir import entrypoint_for, fetch_inputs, outputs_cid

log = logging.getLogger(__name__)

_OUTCOME_KIND = {
    RunOutcome.NONZERO_EXIT: FailureKind.NONZERO_EXIT,
    RunOutcome.TIMEOUT: FailureKind.TIMEOUT,
    RunOutcome.OOM: FailureKind.OOM,
    RunOutcome.OUTPUT_TOO_LARGE: FailureKind.OUTPUT_TOO_LARGE,
    RunOutcome.SANDBOX_ERROR: FailureKind.SANDBOX_ERROR,
    RunOutcome.PIDS_LIMIT: FailureKind.PIDS_LIMIT,
    RunOutcome.OUTPUT_REFUSED: FailureKind.OUTPUT_REFUSED,
    RunOutcome.KILLED: FailureKind.KILLED,
}


class RevealError(ContentError):
    """The outputs cannot be revealed as committed (missing, or a different CID in IPFS)."""


@dataclass(frozen=True)
class WorkerConfig:
    """Provider-side bounds applied to every job, whatever its spec asks."""

    max_input_bytes: int = 1 << 30
    max_input_entries: int = MAX_ENTRIES
    max_output_bytes: int = 1 << 30
    memory_bytes: int = 8 << 30
    max_pids: int = 512
    max_timeout_s: float = 24 * 3600.0
    commit_margin_s: float = 5.0
    """Wall time is cut so the commitment can still be sent before the commit deadline
    (and, on top, the chain fallback's margin for an on-chain commit)."""
    logs: LogLimits = field(default_factory=LogLimits)
    packages: Mapping[str, str] | None = None
    """What torch jobs can import, name to version; a job whose ``runtime.packages`` this
    does not satisfy is handed back unrun. None: not checked (the runtime's own image)."""


class _Failed(Exception):
    """Internal: ends a run with a failure report (or a hand-back)."""

    def __init__(
        self,
        kind: FailureKind | None,
        detail: str,
        exit_code: int | None = None,
        *,
        runtime_ms: int = 0,
        exit_class: ExitClass | None = None,
    ):
        super().__init__(detail)
        self.kind = kind  # None: hand the job back instead of reporting a failure
        self.detail = detail
        self.exit_code = exit_code
        self.runtime_ms = runtime_ms
        self.exit_class = exit_class
        """Set when the job failed by its own fault: commit the canonical failure output."""


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.monotonic() - started) * 1000))


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
        input_cache: InputCache | None = None,
    ) -> None:
        self.retention: PinRetention | None = None
        """Where revealed outputs are held pinned (unset: pinned with no expiry)."""
        self.identity = identity
        self.input_cache = input_cache
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

    async def run(self, record: LocalJob, reporter: Reporter) -> LocalJob:
        """Run an assigned job up to its commitment; returns the final record."""
        assignment = record.assignment.body
        assert isinstance(assignment, Assignment)
        job_id = record.job_id
        scope = trio.CancelScope()
        self._scopes[job_id] = scope
        try:
            with scope:
                record = self._save(record.advance(LocalPhase.RUNNING))
                try:
                    result_cid, runtime_ms = await self._execute(record, assignment, reporter)
                except _Failed as failed:
                    if failed.exit_class is not None:
                        return await self._fail_canonically(record, reporter, failed)
                    return await self._fail(record, reporter, failed)
                return await self._commit(record, result_cid, runtime_ms, reporter)
            # Cancelled (Cancel message or shutdown): the caller decides what to report.
            latest = self.jobs.load(job_id) or record
            if latest.phase in (LocalPhase.ASSIGNED, LocalPhase.RUNNING):
                latest = self._save(latest.advance(LocalPhase.CANCELLED, detail="cancelled"))
            await self.clean(latest)
            return latest
        finally:
            del self._scopes[job_id]

    async def _execute(
        self, record: LocalJob, assignment: Assignment, reporter: Reporter
    ) -> tuple[str, int]:
        """Run the job; returns its outputs' CID and its runtime in ms."""
        plan = await self._plan(assignment)
        run_dir = self.jobs.run_dir(record.job_id)
        await trio.to_thread.run_sync(remove_tree, run_dir)
        try:
            # The download may use the time the job could run: it must not eat the commit.
            await fetch_inputs(
                self.store,
                dict(assignment.input_cids),
                run_dir,
                self.config.max_input_bytes,
                max_entries=self.config.max_input_entries,
                deadline_s=self._wall_time(plan, record),
                cache=self.input_cache,
            )
            entrypoint = entrypoint_for(plan, run_dir)
        except (ContentError, SpecError) as exc:
            raise _Failed(FailureKind.BAD_INPUT, f"inputs: {exc}") from exc
        wall = self._wall_time(plan, record)
        memory = self.config.memory_bytes
        if plan.memory_bytes is not None:  # the spec may ask for less, never for more
            memory = max(16 << 20, min(memory, plan.memory_bytes))
        limits = RunLimits(
            wall_time_s=wall,
            memory_bytes=memory,
            max_pids=self.config.max_pids,
            max_output_bytes=min(plan.max_output_bytes, self.config.max_output_bytes),
            cpus=plan.cpus,
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
                try:
                    if isinstance(self.runtime, EngineRuntime):
                        job = await self._fetch_image(job, plan, record)
                        wall = job.limits.wall_time_s
                    log.info("job %s: running in %s", record.job_id.hex(), self.runtime.name)
                    started = time.monotonic()
                    result = await self.runtime.run(job)
                except ImageRefused as exc:  # before anything ran: no job, no provider fault
                    kind = FailureKind.BAD_INPUT if exc.job_fault else None
                    raise _Failed(kind, str(exc)) from exc
                except SandboxError as exc:
                    raise _Failed(FailureKind.SANDBOX_ERROR, str(exc)) from exc
                runtime_ms = _elapsed_ms(started)
            finally:
                self.gpus.release(devices)
            if self.metrics is not None:
                self.metrics.job_finished(result.outcome, result.duration_s)
            if stream.fed_bytes == 0:  # a runtime without the live hook: send its tail
                stream.feed(result.log_tail.encode("utf-8", "replace"))
        if result.outcome is not RunOutcome.OK:
            kind = _OUTCOME_KIND.get(result.outcome, FailureKind.SANDBOX_ERROR)
            detail = f"{result.outcome}: {result.detail}".strip()
            exit_class = exit_class_of(kind, full_timeout=wall >= plan.timeout_s)
            raise _Failed(
                kind, detail, result.exit_code, runtime_ms=runtime_ms, exit_class=exit_class
            )
        try:
            return await trio.to_thread.run_sync(outputs_cid, run_dir), runtime_ms
        except ContentError as exc:  # the outputs break the layout's limits: the job's fault
            detail = f"outputs cannot be stored: {exc}"
            raise _Failed(
                FailureKind.NONZERO_EXIT, detail, runtime_ms=runtime_ms, exit_class=ExitClass.ERROR
            ) from exc
        except OSError as exc:
            raise _Failed(FailureKind.NONZERO_EXIT, f"outputs cannot be read: {exc}") from exc

    async def _plan(self, assignment: Assignment) -> JobPlan:
        try:
            data = await self.store.read_bytes(assignment.spec_cid, max_size=MAX_SPEC_BYTES)
            plan = parse_plan(data, assignment.input_cids)
        except (ContentError, SpecError) as exc:
            raise _Failed(FailureKind.BAD_INPUT, f"spec: {exc}") from exc
        if plan.runtime == "container" and self.runtime.name not in CONTAINER_RUNTIMES:
            raise _Failed(
                None,
                f"container jobs need docker or podman, this provider runs {self.runtime.name}",
            )
        if plan.packages and self.config.packages is not None:
            missing = unmet(dict(plan.packages), self.config.packages)
            if missing:
                raise _Failed(None, "this provider's Python lacks " + ", ".join(missing))
        return plan

    async def _fetch_image(self, job: PreparedJob, plan: JobPlan, record: LocalJob) -> PreparedJob:
        """Pull and check a container job's image before its clock starts (a pull is not
        the job's runtime); the wall time left for the commit is measured again after."""
        assert isinstance(self.runtime, EngineRuntime)
        with trio.move_on_after(job.limits.wall_time_s) as fetching:
            await self.runtime.check_image(job)
        if fetching.cancelled_caught:
            raise _Failed(None, "the job's image could not be fetched before the commit deadline")
        limits = replace(job.limits, wall_time_s=self._wall_time(plan, record))
        return replace(job, limits=limits)

    def _wall_time(self, plan: JobPlan, record: LocalJob) -> float:
        wanted = min(plan.timeout_s, self.config.max_timeout_s)
        deadline = record.commit_deadline or record.assignment_body.commit_deadline
        reserve = self.config.commit_margin_s
        if record.commit_window:
            reserve += receipt_margin(record.commit_window)
        left = deadline - self.clock.now() - reserve
        if left <= 1:
            raise _Failed(None, "the commit deadline is too close to run the job")
        return min(wanted, left)

    async def _fail(self, record: LocalJob, reporter: Reporter, failed: _Failed) -> LocalJob:
        detail = _text(failed.detail)
        if failed.kind is None:
            log.warning("job %s: handing back: %s", record.job_id.hex(), detail)
            record = self._save(record.advance(LocalPhase.HANDED_BACK, detail=detail))
            body: HandBack | FailureReport = HandBack(
                job_id=record.job_id, provider=self.identity.address, reason=detail
            )
        else:
            log.warning("job %s: failed (%s): %s", record.job_id.hex(), failed.kind, detail)
            record = self._save(record.advance(LocalPhase.FAILED, detail=detail))
            body = self._failure_report(record, failed)
        await self.clean(record)
        await deliver(reporter, body)
        return record

    def _failure_report(self, record: LocalJob, failed: _Failed) -> FailureReport:
        assert failed.kind is not None
        code = failed.exit_code
        return FailureReport(
            job_id=record.job_id,
            provider=self.identity.address,
            kind=failed.kind,
            detail=_text(failed.detail),
            exit_code=code if code is not None and -255 <= code <= 255 else None,
        )

    async def _fail_canonically(
        self, record: LocalJob, reporter: Reporter, failed: _Failed
    ) -> LocalJob:
        """Commit the canonical failure output, then report the failure as well."""
        assert failed.exit_class is not None
        run_dir = self.jobs.run_dir(record.job_id)
        try:
            cid = await trio.to_thread.run_sync(write_failure_output, run_dir, failed.exit_class)
        except (OSError, ContentError) as exc:
            log.warning("job %s: no failure output (%s); reporting only", record.job_id.hex(), exc)
            return await self._fail(record, reporter, failed)
        log.warning(
            "job %s: failed (%s): %s; committing the %s failure output",
            record.job_id.hex(),
            failed.kind,
            _text(failed.detail),
            failed.exit_class,
        )
        committed = await self._commit(
            record,
            cid,
            failed.runtime_ms,
            reporter,
            exit_class=failed.exit_class.value,
            detail=_text(failed.detail),
        )
        await deliver(reporter, self._failure_report(record, failed))
        return committed

    # ---------------------------------------------------------------- commitment
    async def _commit(
        self,
        record: LocalJob,
        result_cid: str,
        runtime_ms: int,
        reporter: Reporter,
        **extra: str,
    ) -> LocalJob:
        salt = new_salt()
        address = self.identity.address
        result = result_digest(result_cid)
        commit = eip712.commit_hash(record.job_id, address, result, runtime_ms, salt)
        signature = eip712.sign_commit(
            self.identity.private_key, self.domain, record.job_id, address, commit
        )
        # Persisted before anything leaves this machine: a restart can still reveal.
        record = self._save(
            record.advance(
                LocalPhase.COMPUTED,
                result_cid=normalize_cid(result_cid),
                runtime_ms=runtime_ms,
                salt=salt,
                commit_hash=commit,
                commit_signature=signature,
                **extra,
            )
        )
        return await self.send_commitment(record, reporter)

    def commitment(self, record: LocalJob) -> Commitment:
        assert record.commit_hash is not None and record.commit_signature is not None
        return Commitment(
            job_id=record.job_id,
            provider=self.identity.address,
            commit_hash=record.commit_hash,
            signature=record.commit_signature,
        )

    async def send_commitment(self, record: LocalJob, reporter: Reporter) -> LocalJob:
        """(Re)send the persisted commitment; the record moves to COMMITTED once the
        coordinator took it, with its CommitReceipt when it gave a valid one."""
        delivered = await deliver(reporter, self.commitment(record))
        if delivered is None:
            log.warning(
                "job %s: commitment not delivered; kept for a retry (on chain if no receipt)",
                record.job_id.hex(),
            )
            return self.jobs.load(record.job_id) or record
        receipt = self.receipt_signature(record, delivered.reply)
        changes = {} if receipt is None else {"receipt_signature": receipt}
        latest = self.jobs.load(record.job_id) or record
        phase = LocalPhase.COMMITTED if latest.phase is LocalPhase.COMPUTED else None
        record = self.jobs.update(record.job_id, phase, **changes)
        log.info(
            "job %s: committed to %s (%s)",
            record.job_id.hex(),
            record.result_cid,
            "receipt kept" if receipt else "no receipt",
        )
        return record

    def receipt_signature(self, record: LocalJob, reply: Message | None) -> bytes | None:
        """The coordinator's receipt signature for ``record``'s commitment, if ``reply``
        is a valid CommitReceipt for it; None (logged) otherwise."""
        job = record.job_id.hex()
        if not isinstance(reply, CommitReceipt):
            kind = "nothing" if reply is None else reply.message_type
            log.warning("job %s: the coordinator answered the commitment with %s", job, kind)
            return None
        problem = None
        if reply.job_id != record.job_id or reply.provider != self.identity.address:
            problem = "it names another job or provider"
        elif reply.coordinator != record.coordinator:
            problem = f"it is from {reply.coordinator}, not the job's {record.coordinator}"
        elif reply.seat != record.seat:
            problem = f"it is for seat {reply.seat}, not seat {record.seat}"
        elif reply.commit_hash != record.commit_hash:
            problem = "it is for another commit hash"
        else:
            try:
                reply.verify(self.domain)
            except SignatureError as exc:
                problem = str(exc)
        if problem is not None:
            log.warning("job %s: CommitReceipt refused: %s", job, problem)
            return None
        return reply.signature

    # -------------------------------------------------------------------- reveal
    async def reveal(self, record: LocalJob) -> tuple[LocalJob, Reveal]:
        """Add the outputs to IPFS, check they got the committed CID, sign the Reveal.

        Once revealed, the run dir is removed; asking again signs the same Reveal from the
        record (the outputs are in IPFS by then).
        """
        async with self._reveal_lock:
            record = self.jobs.load(record.job_id) or record
            if record.phase is not LocalPhase.REVEALED:
                await self._publish(record)
                record = self.jobs.update(record.job_id, LocalPhase.REVEALED)
        await self.clean(record)
        return record, self._signed_reveal(record)

    async def _publish(self, record: LocalJob) -> None:
        if record.phase not in (LocalPhase.COMPUTED, LocalPhase.COMMITTED):
            raise RevealError(f"job {record.job_id.hex()} has no result to reveal ({record.phase})")
        outputs = self.jobs.run_dir(record.job_id) / OUTPUTS_DIR
        if not outputs.is_dir():
            raise RevealError(f"outputs of job {record.job_id.hex()} are gone")
        added = await self.store.add_directory(outputs)
        if normalize_cid(added) != record.result_cid:
            raise RevealError(
                f"IPFS stored the outputs as {added}, not the committed {record.result_cid}"
            )
        if self.retention is not None:
            self.retention.hold(record.result_cid)

    def _signed_reveal(self, record: LocalJob) -> Reveal:
        assert record.result_cid is not None and record.salt is not None
        assert record.runtime_ms is not None
        result = result_digest(record.result_cid)
        signature = eip712.sign_reveal(
            self.identity.private_key,
            self.domain,
            record.job_id,
            self.identity.address,
            result,
            record.runtime_ms,
            record.salt,
        )
        return Reveal(
            job_id=record.job_id,
            provider=self.identity.address,
            result_cid=record.result_cid,
            runtime_ms=record.runtime_ms,
            salt=record.salt,
            signature=signature,
        )

    async def hand_back(self, record: LocalJob, reporter: Reporter, reason: str) -> LocalJob:
        """Give an uncommitted job back to its coordinator."""
        record = self._save(record.advance(LocalPhase.HANDED_BACK, detail=_text(reason)))
        await self.clean(record)
        body = HandBack(job_id=record.job_id, provider=self.identity.address, reason=_text(reason))
        await deliver(reporter, body, attempts=3)
        return record

    async def clean(self, record: LocalJob) -> None:
        """Remove the run dir of a job whose record is terminal (the record stays)."""
        if not record.phase.terminal:
            return
        with trio.CancelScope(shield=True):  # bounded local work; do not leave it half done
            removed = await trio.to_thread.run_sync(self.jobs.remove_run, record.job_id)
        if removed:
            log.info("job %s: run dir removed (%s)", record.job_id.hex(), record.phase)

    def _save(self, record: LocalJob) -> LocalJob:
        self.jobs.save(record)
        return record


def describe(exc: GpuMarketError) -> str:
    return _text(f"{type(exc).__name__}: {exc}")
