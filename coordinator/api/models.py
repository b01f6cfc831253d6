"""Response and request bodies of the HTTP API (shapes fixed by the phase 2 contract)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from coordinator.store import JobRecord, ProviderSlot


class SubmitJob(BaseModel):
    job_id: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$", description="the on-chain job id")


class Accepted(BaseModel):
    job_id: str
    state: str


class Failure(BaseModel):
    reason: str
    provider: str | None


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

    @classmethod
    def of(cls, job: JobRecord, slots: list[ProviderSlot]) -> JobView:
        failure = None
        if job.failure_reason and (
            job.state.value in ("failed", "reclaimed") or job.failure_provider
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
            providers=[
                ProviderView(
                    address=s.address,
                    peer_id=s.peer_id,
                    price=str(s.price),
                    state=str(s.state),
                    commit_hash=s.commit_hash,
                    result_cid=s.result_cid,
                    outcome=s.outcome,
                    detail=s.detail,
                )
                for s in slots
            ],
            settle_tx=job.settle_tx,
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


class Explanation(BaseModel):
    job_id: str
    candidates: list[CandidateView]


class Providers(BaseModel):
    providers: list[dict[str, Any]]


class Health(BaseModel):
    ok: bool
    chain_block: int
    providers: int


class ErrorBody(BaseModel):
    error: str
    detail: str
