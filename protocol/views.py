"""What the coordinator's HTTP API answers: the view models both sides of the wire share.

The coordinator builds these from its records (``coordinator/api/views.py``) and FastAPI
renders them; the wallet and the provider node parse the same models from the JSON they
receive (:func:`parse_view`), so every field either side reads is typed and checked, and a
reply that does not fit fails once, at the boundary, naming the field. Amounts are decimal
strings of base units (10^-6 token, ``protocol.units``); times are unix seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from protocol.errors import MessageError

V = TypeVar("V", bound=BaseModel)

Start = Literal["now", "queued", "unmatched"]
"""When a quoted option would start: on free job slots, behind running jobs, or never."""


class JobAccepted(BaseModel):
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
    seat: int = Field(description="the seat's index in the job (its on-chain order)")
    rate_per_hour: str = Field(description="what the seat is billed per hour of runtime")
    assigned_at: int | None = Field(description="block time the seat went on chain")
    runtime_ms: int | None = Field(description="the runtime the provider revealed")
    billed_ms: int | None = Field(description="the runtime the market billed (JobSettled)")
    pay: str | None = Field(description="what the market paid the seat (JobSettled)")
    slashed: str | None = Field(description="stake burned by the market (ProviderSlashed)")


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


class JobList(BaseModel):
    jobs: list[JobView]


class JobEvent(BaseModel):
    """One server-sent event of ``GET /jobs/{id}/events``: the job reached ``state``."""

    state: str
    at: float
    detail: dict[str, Any] = Field(description="what the coordinator recorded with the change")


class LogLineView(BaseModel):
    provider: str
    at: float
    text: str


class Logs(BaseModel):
    lines: list[LogLineView]


class SpeedCheckView(BaseModel):
    """The latest benchmark challenge of one dtype a provider claims."""

    passed: bool
    tflops: float = Field(description="the per-GPU figure challenged")
    devices: int = Field(description="devices that answered at once")
    at: float = Field(description="when it was judged (unix seconds)")
    reason: str = Field(default="", description="why it failed; empty for a pass")


class CandidateView(BaseModel):
    address: str
    peer_id: str
    score: float | None
    chosen: bool
    reason: str
    checks: dict[str, SpeedCheckView] = Field(
        default_factory=dict,
        description="per dtype, the provider's latest speed challenge (the live book's)",
    )


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


class DeclineView(BaseModel):
    """A provider that declined a seat (or whose answer could not be used), and why."""

    seat: int
    address: str
    reason: str
    at: float


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
    checks: dict[str, SpeedCheckView] = Field(
        default_factory=dict, description="per dtype, its latest speed challenge"
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
    checks: dict[str, SpeedCheckView] = Field(
        default_factory=dict,
        description="per dtype, its latest speed challenge here (none while not in the book)",
    )


class QuotedProvider(BaseModel):
    address: str
    peer_id: str
    price: str = Field(description="the most the seat earns (token units): rate x duration, capped")
    rate_per_hour: str = Field(description="what the seat is billed per hour of runtime")
    score: float


class QuoteOption(BaseModel):
    """One redundancy choice: who would be seated, at what price, and when."""

    redundancy: str = Field(description='"auto" (one primary), "2" or "3"')
    seats: int = Field(description="providers seated on chain")
    requested: bool = Field(description="the spec's own choice")
    start: Start = Field(
        description="now: free job slots; queued: only behind running jobs; unmatched: none"
    )
    providers: list[QuotedProvider]
    total: str | None = Field(description="sum of the seats' prices (token units)")
    eligible: int
    filtered: dict[str, int] = Field(description="providers left out, counted by first reason")
    candidates: list[CandidateView]


class Quote(BaseModel):
    name: str
    gpus: int
    duration_s: int = Field(description="the billed duration prices are sized for")
    price_cap: str = Field(description="the spec's max_per_provider (token units)")
    exact: bool
    providers_in_book: int
    capable: int = Field(
        description="providers in the book that could ever run the spec, whatever their "
        "load, price or stake (runtime, GPUs, memory, speed, packages, requires)"
    )
    incapable: dict[str, int] = Field(
        description="providers that never could, counted by first reason"
    )
    options: list[QuoteOption]


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


class ViewMismatch(MessageError):
    """A reply that does not fit the view model it should be: names the model and the
    first fields that do not fit (the caller adds which server and request)."""

    def __init__(self, model: str, problems: str) -> None:
        self.model, self.problems = model, problems
        super().__init__(f"a reply that is not a {model} ({problems})")


def view_problems(exc: ValidationError, *, limit: int = 3) -> str:
    """``providers.0.price: Field required; state: Input should be a valid string``: the
    first ``limit`` problems of a reply, each with the path of the field it concerns."""
    problems = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(part) for part in err["loc"]) or "the reply"
        problems.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        problems.append(f"and {more} more")
    return "; ".join(problems)


def parse_view(model: type[V], data: Any) -> V:
    """``data`` (decoded JSON) as ``model``; raises :class:`ViewMismatch` when it does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ViewMismatch(model.__name__, view_problems(exc)) from exc


def ago(at: float, now: float) -> str:
    """``45 s ago``, ``12 min ago``, ``3 h ago``: how long before ``now`` ``at`` was."""
    seconds = max(0.0, now - at)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def describe_checks(checks: Mapping[str, SpeedCheckView], now: float) -> str:
    """``bf16 780 TFLOPS, verified 12 min ago on 8 GPUs; fp32 51 TFLOPS, failed 3 min ago:
    why``: a provider's latest speed challenges, as people read them."""
    parts = []
    for dtype, c in sorted(checks.items()):
        on = f" on {c.devices} GPUs" if c.devices > 1 else ""
        verdict = "verified" if c.passed else "failed"
        why = "" if c.passed else f": {c.reason}"
        parts.append(f"{dtype} {c.tflops:.3g} TFLOPS, {verdict} {ago(c.at, now)}{on}{why}")
    return "; ".join(parts) or "not challenged yet"
