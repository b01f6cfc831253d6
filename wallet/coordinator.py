"""A small synchronous client for the coordinator's HTTP API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from protocol.api_auth import sign_request
from protocol.encoding import decode_json
from protocol.errors import GpuMarketError, MessageError
from protocol.ids import JobId, job_id_hex
from protocol.tls import client_tls
from protocol.views import (
    Explanation,
    Health,
    JobAccepted,
    JobEvent,
    JobList,
    JobView,
    LogLineView,
    Logs,
    ProviderRow,
    Providers,
    Quote,
    parse_view,
)

REQUEST_TIMEOUT_S = 10.0
MAX_EVENT_LINE = 64 * 1024
MAX_METRICS_BYTES = 1 << 20
UNDER_WAY = ("created", "matching", "assigned", "running")
"""Job states whose seats still wait for, or hold, a provider's job slot."""
V = TypeVar("V", bound=BaseModel)
_JOBS_LINE = re.compile(r'^gpumarket_jobs\{state="([a-z]+)"\} ([0-9.e+]+)$', re.MULTILINE)


class CoordinatorRequestError(GpuMarketError):
    """The coordinator could not be reached or refused a request."""

    def __init__(self, url: str, detail: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        self.detail = detail
        prefix = f"coordinator at {url}"
        super().__init__(
            f"{prefix}: {detail}" if status is None else f"{prefix} answered {status}: {detail}"
        )


class CoordinatorClient:
    def __init__(self, base_url: str, *, timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=client_tls())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CoordinatorRequestError(self.base_url, f"unreachable ({exc})") from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
                detail = body.get("detail") or body.get("error") or resp.text
            except ValueError:
                detail = resp.text[:500]
            raise CoordinatorRequestError(self.base_url, str(detail), resp.status_code)
        try:
            return resp.json()
        except ValueError as exc:
            raise CoordinatorRequestError(
                self.base_url, "answered with something that is not JSON"
            ) from exc

    def _view(self, model: type[V], method: str, path: str, **kwargs: Any) -> V:
        """``method path`` answered as ``model``; a reply that does not fit is a
        :class:`CoordinatorRequestError` naming the request and the fields at fault."""
        data = self._request(method, path, **kwargs)
        try:
            return parse_view(model, data)
        except MessageError as exc:
            raise CoordinatorRequestError(
                self.base_url, f"answered {method} {path} with {exc}"
            ) from exc

    def jobs_under_way(self) -> int:
        """Jobs this coordinator has not seen committed yet (waiting for providers, or
        with them), from the job counts of ``GET /metrics``."""
        try:
            resp = self._http.get("/metrics")
        except httpx.TransportError as exc:
            raise CoordinatorRequestError(self.base_url, f"unreachable ({exc})") from exc
        if resp.status_code >= 400:
            raise CoordinatorRequestError(self.base_url, resp.text[:500], resp.status_code)
        text = resp.text[:MAX_METRICS_BYTES]
        counts = {state: float(n) for state, n in _JOBS_LINE.findall(text)}
        if not counts:
            raise CoordinatorRequestError(self.base_url, "its /metrics carry no gpumarket_jobs")
        return int(sum(counts.get(state, 0.0) for state in UNDER_WAY))

    def health(self) -> Health:
        return self._view(Health, "GET", "/health")

    def notify(self, job_id: JobId) -> JobAccepted:
        return self._view(JobAccepted, "POST", "/jobs", json={"job_id": job_id_hex(job_id)})

    def job(self, job_id: JobId) -> JobView:
        return self._view(JobView, "GET", f"/jobs/{job_id_hex(job_id)}")

    def jobs(self, requester: str | None = None) -> list[JobView]:
        params = {"requester": requester} if requester else {}
        return self._view(JobList, "GET", "/jobs", params=params).jobs

    def explain(self, job_id: JobId) -> Explanation:
        return self._view(Explanation, "GET", f"/jobs/{job_id_hex(job_id)}/explain")

    def providers(self) -> list[ProviderRow]:
        return self._view(Providers, "GET", "/providers").providers

    def provider_table(self, limit: int) -> Providers:
        return self._view(Providers, "GET", "/providers", params={"limit": limit})

    def quote(self, spec_text: str, *, input_bytes: int = 0) -> Quote:
        """A dry-run match of the spec; ``input_bytes``: its inputs' size where known
        (providers whose input limit is lower are then filtered)."""
        body: dict[str, Any] = {"spec": spec_text}
        if input_bytes:
            body["input_bytes"] = input_bytes
        return self._view(Quote, "POST", "/quote", json=body)

    def logs(self, job_id: JobId, private_key: bytes) -> list[LogLineView]:
        path = f"/jobs/{job_id_hex(job_id)}/logs"
        headers = sign_request(private_key, "GET", path)
        return self._view(Logs, "GET", path, headers=headers).lines

    def events(self, job_id: JobId, *, timeout: float) -> Iterator[JobEvent]:
        """Follow the job's server-sent events until the stream ends or ``timeout``."""
        path = f"/jobs/{job_id_hex(job_id)}/events"
        stream_timeout = httpx.Timeout(REQUEST_TIMEOUT_S, read=timeout)
        try:
            with self._http.stream("GET", path, timeout=stream_timeout) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise CoordinatorRequestError(self.base_url, resp.text[:500], resp.status_code)
                for line in resp.iter_lines():
                    if len(line) > MAX_EVENT_LINE:
                        raise CoordinatorRequestError(self.base_url, "event line too long")
                    if line.startswith("data:"):
                        yield self._event(path, line[5:].strip())
        except httpx.TransportError as exc:
            raise CoordinatorRequestError(self.base_url, f"event stream failed ({exc})") from exc

    def _event(self, path: str, data: str) -> JobEvent:
        try:
            return parse_view(JobEvent, decode_json(data.encode()))
        except MessageError as exc:
            raise CoordinatorRequestError(
                self.base_url, f"sent an event on {path} that is not one: {exc}"
            ) from exc
