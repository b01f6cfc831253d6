"""Response and request bodies of the HTTP API (shapes fixed by the phase 2 contract)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from coordinator.matching.book import BookEntry
from coordinator.matching.columns import DTYPE_INDEX, ProviderColumns
from coordinator.store import DeclineRecord, JobRecord, ProviderSlot
from coordinator.verification.reputation import Standing
from protocol.lifecycle import JobState


class SubmitJob(BaseModel):
    job_id: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$", description="the on-chain job id")


class JobAccepted(BaseModel):
    job_id: str
    state: str


class Failure(BaseModel):
    reason: str
    provider: str | None


def _text(amount: int | None) -> str | None:
    return None if amount is None else str(amount)


class ProviderView(BaseModel):
    address: str
    peer_id: str
    price: str
    state: str
    commit_hash: str | None
    result_cid: str | None
    outcome: str | None
    detail: str | None = Field(
        description="why this provider failed, was replaced or is waiting, as last recorded"
    )
    seat: int = Field(description="the seat's index in the job (its on-chain order)")
    rate_per_hour: str = Field(description="what the seat is billed per hour of runtime")
    assigned_at: int | None = Field(description="block time the seat went on chain")
    runtime_ms: int | None = Field(description="the runtime the provider revealed")
    billed_ms: int | None = Field(description="the runtime the market billed (JobSettled)")
    pay: str | None = Field(description="what the market paid the seat (JobSettled)")
    slashed: str | None = Field(description="stake burned by the market (ProviderSlashed)")

    @classmethod
    def of(cls, s: ProviderSlot) -> ProviderView:
        return cls(
            address=s.address,
            peer_id=s.peer_id,
            price=str(s.price),
            state=str(s.state),
            commit_hash=s.commit_hash,
            result_cid=s.result_cid,
            outcome=None if s.outcome is None else str(s.outcome),
            detail=s.detail,
            seat=s.idx,
            rate_per_hour=str(s.rate_per_hour),
            assigned_at=s.assigned_at,
            runtime_ms=s.runtime_ms,
            billed_ms=s.billed_ms,
            pay=_text(s.pay),
            slashed=_text(s.slashed),
        )


class JobView(BaseModel):
    job_id: str
    state: str
    requester: str
    spec_cid: str
    redundancy: int
    created_at: float
    updated_at: float
    result_cid: str | None
    failure: Failure | None
    providers: list[ProviderView]
    settle_tx: str | None
    fee: str = Field(description="the coordinator's fee, fixed at creation")
    refund: str | None = Field(
        description="what the requester got back at settlement or abort (None before)"
    )
    abort_tx: str | None = Field(
        description="the abort that refunded the requester when the job failed"
    )
    price_cap: str = Field(default="0", description="the most a seat may be paid")
    phases: dict[str, float] = Field(
        default_factory=dict,
        description="when the job first reached each phase (queued, matched, assign_tx_mined, "
        "delivered, all_committed, all_revealed, settle_tx_mined), coordinator clock, unix "
        "seconds; only in GET /jobs/{id}",
    )

    @classmethod
    def of(cls, job: JobRecord, slots: list[ProviderSlot]) -> JobView:
        failure = None
        if job.failure_reason and (
            job.state in (JobState.FAILED, JobState.RECLAIMED) or job.failure_provider
        ):
            failure = Failure(reason=job.failure_reason, provider=job.failure_provider)
        return cls(
            job_id=job.job_id,
            state=str(job.state),
            requester=job.requester,
            spec_cid=job.spec_cid,
            redundancy=job.redundancy,
            created_at=job.created_at,
            updated_at=job.updated_at,
            result_cid=job.result_cid,
            failure=failure,
            providers=[ProviderView.of(s) for s in slots],
            settle_tx=job.settle_tx,
            fee=str(job.fee),
            refund=_text(job.refund),
            abort_tx=job.abort_tx,
            price_cap=str(job.price_cap),
        )


class JobList(BaseModel):
    jobs: list[JobView]


class LogLineView(BaseModel):
    provider: str
    at: float
    text: str


class Logs(BaseModel):
    lines: list[LogLineView]


class CandidateView(BaseModel):
    address: str
    peer_id: str
    score: float | None
    chosen: bool
    reason: str


class SeatBill(BaseModel):
    """One seat's terms and what it earned: billed runtime and pay come from JobSettled."""

    seat: int
    address: str
    price: str
    rate_per_hour: str
    runtime_ms: int | None
    billed_ms: int | None
    pay: str | None
    outcome: str | None
    slashed: str | None

    @classmethod
    def of(cls, s: ProviderSlot) -> SeatBill:
        return cls(
            seat=s.idx,
            address=s.address,
            price=str(s.price),
            rate_per_hour=str(s.rate_per_hour),
            runtime_ms=s.runtime_ms,
            billed_ms=s.billed_ms,
            pay=_text(s.pay),
            outcome=None if s.outcome is None else str(s.outcome),
            slashed=_text(s.slashed),
        )


class DeclineView(BaseModel):
    """A provider that declined a seat (or whose answer could not be used), and why."""

    seat: int
    address: str
    reason: str
    at: float

    @classmethod
    def of(cls, d: DeclineRecord) -> DeclineView:
        return cls(seat=d.seat, address=d.address, reason=d.reason, at=d.at)


class Explanation(BaseModel):
    job_id: str
    candidates: list[CandidateView]
    seats: list[SeatBill] = Field(description="the job's on-chain seats and their billing")
    declines: list[DeclineView]
    phases: dict[str, float] = Field(
        default_factory=dict,
        description="when the job first reached each phase (coordinator clock, unix seconds)",
    )


class ProviderRow(BaseModel):
    """One provider of the live book (``GET /providers``); amounts in base units (10^-6 token)."""

    address: str
    peer_id: str
    multiaddrs: list[str]
    gpus: list[dict[str, Any]]
    gpu_model: str
    gpu_count: int
    memory_bytes: int = Field(description="memory of its smallest GPU")
    tflops: dict[str, float] = Field(description="per dtype: verified when listed in verified")
    verified: list[str] = Field(description="dtypes whose TFLOPS a challenge measured")
    verified_at: float | None = Field(
        default=None, description="when a challenge last measured it (unix seconds)"
    )
    price_per_gpu_hour: str = Field(
        description="base units per GPU-hour: a seat of g GPUs is billed g times this"
    )
    price_per_cpu_hour: str = Field(
        description="base units per hour for a seat of a job asking for no GPU"
    )
    reputation: float = Field(description="the one-sided lower bound matching ranks by")
    free_gpus: int
    free_slots: int = Field(description="job slots free now as this coordinator counts them")
    utilization: float
    registered: bool
    free_stake: str
    driver: str | None
    cuda: str | None
    torch: str
    last_seen: float
    unreachable: str | None = Field(
        default=None,
        description="why none of its advertised addresses answered this coordinator's last "
        "probe, naming each address and what the provider must configure; null: one answered",
    )

    @classmethod
    def of(cls, entry: BookEntry, cols: ProviderColumns, free_jobs: Sequence[int]) -> ProviderRow:
        """``free_jobs``: :meth:`ProviderColumns.free_jobs`, computed once for every row."""
        a = entry.advert
        slot = cols.slot(a.provider)
        tflops = {str(k): float(v) for k, v in a.benchmark.tflops.items()}
        verified: list[str] = []
        free_slots = 0
        if slot is not None:
            free_slots = max(0, int(free_jobs[slot]))
            for dtype, i in DTYPE_INDEX.items():
                if cols.measured[slot, i]:
                    tflops[dtype] = float(cols.tflops[slot, i])
                    verified.append(dtype)
        return cls(
            address=a.provider,
            peer_id=a.peer_id,
            multiaddrs=list(a.multiaddrs),
            gpus=[g.model_dump() for g in a.gpus],
            gpu_model=a.fingerprint.gpu_model,
            gpu_count=len(a.gpus),
            memory_bytes=min((g.memory_bytes for g in a.gpus), default=0),
            tflops={k: v for k, v in tflops.items() if v > 0},
            verified=verified,
            verified_at=entry.verified_at,
            price_per_gpu_hour=str(a.price_per_gpu_hour),
            price_per_cpu_hour=str(a.price_per_cpu_hour),
            reputation=entry.reputation,
            free_gpus=a.free_gpus,
            free_slots=free_slots,
            utilization=a.utilization,
            registered=entry.registered,
            free_stake=str(entry.free_stake),
            driver=a.fingerprint.driver,
            cuda=a.fingerprint.cuda,
            torch=a.fingerprint.torch,
            last_seen=entry.seen_at,
            unreachable=entry.unreachable,
        )


class Providers(BaseModel):
    providers: list[ProviderRow]
    total: int = Field(description="providers in the book (rows beyond the limit left out)")


class OutcomeCounts(BaseModel):
    """Verified outcomes counted into a provider's reputation (seeded ones included)."""

    successes: int = Field(description="seats paid by the market")
    slashes: int = Field(description="seats slashed: a wrong result or an unopened commitment")
    faults: int = Field(description="failures on the provider's side (not the job's code)")
    timeouts: int = Field(description="no commitment by the commit deadline, or went silent")
    withheld: int = Field(description="commitments never revealed")


class StandingView(BaseModel):
    """A provider's standing with this coordinator (``GET /providers/{address}/standing``)."""

    address: str
    alpha: float = Field(description="Beta posterior: successes plus prior, decayed to now")
    beta: float = Field(description="Beta posterior: weighted failures plus prior, decayed")
    mean: float
    lower_bound: float = Field(description="the one-sided 95% lower bound matching ranks by")
    evidence: float = Field(description="pseudo-observations beyond the prior still in force")
    established: bool = Field(description="enough evidence to leave the newcomer treatment")
    newcomer: bool
    outcomes: OutcomeCounts
    updated_at: float = Field(description="when the last outcome was counted (unix seconds)")

    @classmethod
    def of(cls, s: Standing) -> StandingView:
        r = s.record
        return cls(
            address=r.address,
            alpha=s.alpha,
            beta=s.beta,
            mean=s.mean,
            lower_bound=s.lower_bound,
            evidence=s.evidence,
            established=s.established,
            newcomer=not s.established,
            outcomes=OutcomeCounts(
                successes=r.successes,
                slashes=r.slashes,
                faults=r.faults,
                timeouts=r.timeouts,
                withheld=r.withheld,
            ),
            updated_at=r.updated_at,
        )


class Health(BaseModel):
    ok: bool
    chain_block: int
    providers: int
    ipfs_peers: list[str] = Field(
        default=[],
        description="swarm multiaddrs of this coordinator's IPFS node, which keeps settled "
        "results for result_retention_s: a requester's node dials them to fetch a result",
    )
    result_retention_s: float = Field(
        default=0.0, description="how long settled results stay pinned there (0: not kept)"
    )


class ErrorBody(BaseModel):
    error: str
    detail: str
