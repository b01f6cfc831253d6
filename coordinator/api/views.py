"""The API's views built from the coordinator's records (the models are ``protocol.views``).

Each function renders one record kind into the shared view model the wallet and the
provider node parse; amounts become decimal strings of base units here, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

from coordinator.matching.book import BookEntry
from coordinator.matching.columns import DTYPE_INDEX, ProviderColumns
from coordinator.store import DeclineRecord, JobRecord, ProviderSlot
from coordinator.verification.reputation import Standing
from protocol.lifecycle import JobState
from protocol.views import (
    DeclineView,
    Failure,
    JobView,
    OutcomeCounts,
    ProviderRow,
    ProviderView,
    SeatBill,
    SpeedCheckView,
    StandingView,
)


def _text(amount: int | None) -> str | None:
    return None if amount is None else str(amount)


def provider_view(s: ProviderSlot) -> ProviderView:
    """One seat of a job as ``GET /jobs/{id}`` shows it."""
    return ProviderView(
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


def job_view(job: JobRecord, slots: list[ProviderSlot]) -> JobView:
    """A job and its seats; the failure shows once the job failed or a provider is named."""
    failure = None
    if job.failure_reason and (
        job.state in (JobState.FAILED, JobState.RECLAIMED) or job.failure_provider
    ):
        failure = Failure(reason=job.failure_reason, provider=job.failure_provider)
    return JobView(
        job_id=job.job_id,
        state=str(job.state),
        requester=job.requester,
        spec_cid=job.spec_cid,
        redundancy=job.redundancy,
        created_at=job.created_at,
        updated_at=job.updated_at,
        result_cid=job.result_cid,
        failure=failure,
        providers=[provider_view(s) for s in slots],
        settle_tx=job.settle_tx,
        fee=str(job.fee),
        refund=_text(job.refund),
        abort_tx=job.abort_tx,
        price_cap=str(job.price_cap),
    )


def seat_bill(s: ProviderSlot) -> SeatBill:
    """An on-chain seat's terms and what it earned: the billing fields of its seat view."""
    seat = provider_view(s).model_dump(include=set(SeatBill.model_fields))
    return SeatBill.model_validate(seat)


def decline_view(d: DeclineRecord) -> DeclineView:
    return DeclineView(seat=d.seat, address=d.address, reason=d.reason, at=d.at)


def check_views(entry: BookEntry | None) -> dict[str, SpeedCheckView]:
    """Per dtype, the provider's latest speed challenge (none for a provider not in the book)."""
    if entry is None:
        return {}
    return {
        dtype: SpeedCheckView(
            passed=c.passed, tflops=c.tflops, devices=c.devices, at=c.at, reason=c.reason
        )
        for dtype, c in entry.checks.items()
    }


def provider_row(entry: BookEntry, cols: ProviderColumns, free_jobs: Sequence[int]) -> ProviderRow:
    """A provider of the live book; measured TFLOPS replace advertised ones.
    ``free_jobs``: :meth:`ProviderColumns.free_jobs`, computed once for every row."""
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
    return ProviderRow(
        address=a.provider,
        peer_id=a.peer_id,
        multiaddrs=list(a.multiaddrs),
        gpus=[g.model_dump() for g in a.gpus],
        gpu_model=a.fingerprint.gpu_model,
        gpu_count=len(a.gpus),
        memory_bytes=min((g.memory_bytes for g in a.gpus), default=0),
        tflops={k: v for k, v in tflops.items() if v > 0},
        verified=verified,
        checks=check_views(entry),
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


def standing_view(s: Standing) -> StandingView:
    """A provider's reputation here with the verified outcomes counted into it."""
    r = s.record
    return StandingView(
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
