"""The FastAPI app factory. Routes are thin: they parse, ask the backend, render."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import StreamingResponse

from coordinator.api import dashboard, errors, history
from coordinator.api.bodies import SUBMIT_JOB_MAX_BYTES, SubmitJob, body_schema, json_body
from coordinator.api.quote import QUOTE_MAX_BYTES, QuoteRequest, quote
from coordinator.api.views import (
    check_views,
    decline_view,
    job_view,
    provider_row,
    seat_bill,
    standing_view,
)
from coordinator.errors import NotAuthorized
from coordinator.history import phases
from coordinator.matching.book import ProviderBook
from coordinator.metrics import Metrics
from coordinator.signals import Signals
from coordinator.store import AsyncStore, JobRecord
from coordinator.verification.reputation import standing
from protocol.api_auth import verify_request
from protocol.errors import MessageError
from protocol.ids import job_id_hex, parse_address, parse_job_id
from protocol.lifecycle import JobState
from protocol.spec_io import parse_spec
from protocol.views import (
    CandidateView,
    ErrorBody,
    Explanation,
    Health,
    JobAccepted,
    JobEvent,
    JobList,
    JobView,
    LogLineView,
    Logs,
    Providers,
    Quote,
    StandingView,
)

KEEPALIVE_S = 15.0
DEFAULT_STAKE_FACTOR = 5
"""The market's default; the service passes its deployment's ``stakeFactor``."""
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 409, 422, 503)
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    **{code: {"model": ErrorBody} for code in (413, 415)},
}


class ApiBackend(Protocol):
    """What the API needs from the running coordinator."""

    store: AsyncStore
    book: ProviderBook
    signals: Signals
    metrics: Metrics

    async def notice(self, job_id: str) -> JobRecord:
        """Learn of an on-chain job now (idempotent); raises UnknownJob / NotOurJob."""
        ...

    def chain_block(self) -> int: ...

    def settle_batches(self) -> int: ...


def _job_key(job_id: str) -> str:
    return job_id_hex(parse_job_id(job_id))


def create_app(
    backend: ApiBackend,
    *,
    stake_factor: int = DEFAULT_STAKE_FACTOR,
    ipfs_peers: Sequence[str] = (),
    result_retention_s: float = 0.0,
) -> FastAPI:
    """The HTTP API over ``backend``; ``ipfs_peers`` and ``result_retention_s`` say where
    and how long this coordinator's node keeps settled results (``GET /health``)."""
    app = FastAPI(
        title="gpumarket coordinator",
        version="1",
        description="Jobs, providers and settlement of one gpumarket coordinator.",
    )
    errors.install(app)

    async def view(key: str) -> JobView:
        job = await backend.store.get_job(key)
        out = job_view(job, await backend.store.slots(key))
        when = phases(job, await backend.store.events(key))
        out.phases = {str(phase): at for phase, at in when.items()}
        return out

    @app.post(
        "/jobs",
        status_code=202,
        response_model=JobAccepted,
        responses=BODY_ERRORS,
        openapi_extra=body_schema(SubmitJob, SUBMIT_JOB_MAX_BYTES),
    )
    async def submit(
        body: Annotated[SubmitJob, Depends(json_body(SubmitJob, SUBMIT_JOB_MAX_BYTES))],
    ) -> JobAccepted:
        """Tell the coordinator about a job created on chain (everything else is read there)."""
        job = await backend.notice(_job_key(body.job_id))
        return JobAccepted(job_id=job.job_id, state=str(job.state))

    @app.get("/jobs", response_model=JobList, responses=ERRORS)
    async def list_jobs(
        requester: str | None = Query(default=None, max_length=42),
        state: JobState | None = None,
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> JobList:
        who = parse_address(requester) if requester is not None else None
        jobs = await backend.store.list_jobs(requester=who, state=state, limit=limit)
        return JobList(jobs=[job_view(j, await backend.store.slots(j.job_id)) for j in jobs])

    @app.get("/jobs/{job_id}", response_model=JobView, responses=ERRORS)
    async def get_job(job_id: str) -> JobView:
        return await view(_job_key(job_id))

    @app.get("/jobs/{job_id}/explain", response_model=Explanation, responses=ERRORS)
    async def explain(job_id: str) -> Explanation:
        """Why each candidate provider won or lost its seat, who declined one, what each
        seat was billed and paid, and when the job reached each phase."""
        key = _job_key(job_id)
        job = await backend.store.get_job(key)
        found = await backend.store.explanation(key) or []
        slots = await backend.store.slots(key)
        when = phases(job, await backend.store.events(key))
        return Explanation(
            job_id=key,
            candidates=[
                CandidateView(
                    **{k: c[k] for k in CandidateView.model_fields if k != "checks"},
                    checks=check_views(backend.book.entries.get(c["address"])),
                )
                for c in found
            ],
            seats=[seat_bill(s) for s in slots if s.state.on_chain],
            declines=[decline_view(d) for d in await backend.store.declines(key)],
            phases={str(phase): at for phase, at in when.items()},
        )

    @app.get("/jobs/{job_id}/logs", response_model=Logs, responses=ERRORS)
    async def logs(job_id: str, request: Request) -> Logs:
        """The job's log lines; only its requester may read them (signed request headers)."""
        key = _job_key(job_id)
        job = await backend.store.get_job(key)
        signer = verify_request(dict(request.headers), "GET", request.url.path)
        if signer != job.requester:
            raise NotAuthorized(f"only the requester {job.requester} may read this job's logs")
        lines = await backend.store.logs(key)
        return Logs(
            lines=[
                LogLineView(provider=line.provider, at=line.at, text=line.text) for line in lines
            ]
        )

    @app.get(
        "/jobs/{job_id}/events",
        responses={200: {"content": {"text/event-stream": {}}}, **ERRORS},
        response_class=StreamingResponse,
    )
    async def events(job_id: str) -> StreamingResponse:
        """Server-sent events, one per state change; the stream ends after a final state."""
        key = _job_key(job_id)
        await backend.store.get_job(key)
        return StreamingResponse(_event_stream(backend, key), media_type="text/event-stream")

    @app.get("/providers", response_model=Providers, responses=ERRORS)
    async def providers(limit: int = Query(default=100, ge=1, le=1000)) -> Providers:
        """The live book, cheapest GPU-hour (then CPU-hour) first, at most ``limit`` rows."""
        book = backend.book
        entries = sorted(
            book.entries.values(),
            key=lambda e: (
                e.advert.price_per_gpu_hour,
                e.advert.price_per_cpu_hour,
                e.advert.provider,
            ),
        )[:limit]
        free = book.columns.free_jobs().tolist()
        rows = [provider_row(e, book.columns, free) for e in entries]
        return Providers(providers=rows, total=len(book))

    @app.post(
        "/quote",
        response_model=Quote,
        responses=BODY_ERRORS,
        openapi_extra=body_schema(QuoteRequest, QUOTE_MAX_BYTES),
    )
    async def quote_spec(
        body: Annotated[QuoteRequest, Depends(json_body(QuoteRequest, QUOTE_MAX_BYTES))],
    ) -> Quote:
        """What the spec would get if submitted now: a dry-run match per redundancy choice
        (nothing reserved, nobody offered a seat)."""
        return quote(parse_spec(body.spec), backend.book.columns, stake_factor, body.input_bytes)

    @app.get("/providers/{address}/standing", response_model=StandingView, responses=ERRORS)
    async def provider_standing(address: str) -> StandingView:
        """A provider's reputation here: its posterior, bound, evidence, the verified
        outcomes counted (404 when this coordinator knows no outcome of it) and its latest
        speed challenge per dtype."""
        who = parse_address(address[:64])
        view = standing_view(await standing(backend.store, who, time.time()))
        view.checks = check_views(backend.book.entries.get(who))
        return view

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(
            ok=True,
            chain_block=backend.chain_block(),
            providers=len(backend.book),
            ipfs_peers=list(ipfs_peers),
            result_retention_s=result_retention_s,
        )

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        counts = await backend.store.count_by_state()
        body = backend.metrics.render(
            counts, len(backend.book), backend.book.slot_occupancy(), backend.settle_batches()
        )
        return Response(body, media_type="text/plain; version=0.0.4")

    history.install(app, backend, ERRORS)
    dashboard.install(app)
    return app


async def _event_stream(backend: ApiBackend, key: str) -> AsyncIterator[bytes]:
    last = 0
    while True:
        seen = backend.signals.generation(key)
        events = await backend.store.events(key, after=last)
        for event in events:
            last = event.id
            payload = JobEvent(state=str(event.state), at=event.at, detail=event.detail)
            yield f"data: {json.dumps(payload.model_dump(), default=str)}\n\n".encode()
            if event.state.ends_stream:
                return
        if not await backend.signals.wait(key, KEEPALIVE_S, since=seen):
            yield b": keep-alive\n\n"


__all__ = ["ApiBackend", "MessageError", "create_app"]
