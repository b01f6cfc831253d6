"""Errors the coordinator raises on purpose, below the project's one exception tree.

::

    GpuMarketError (protocol.errors)
    ├── MessageError
    │   └── SignatureError          (401 on the API: unsigned or wrongly signed request)
    ├── MatchError
    │   └── NoCandidates            no provider satisfies a job (409)
    └── CoordinatorError            base of the coordinator's own failures
        ├── UnknownJob              the store (and the chain) know no such job (404,
        │                           "JobNotFound" in the body, as the contract names it)
        ├── PageNotFound            no such dashboard file (404)
        ├── NotOurJob               the job names another coordinator (409)
        ├── InvalidTransition       a job state change the lifecycle forbids (409)
        ├── NotAuthorized           a signed request from the wrong account (401)
        └── Unavailable             a dependency (chain, IPFS) cannot be reached (503)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from protocol.errors import GpuMarketError, MatchError

if TYPE_CHECKING:
    from coordinator.matching.matcher import Candidate


class CoordinatorError(GpuMarketError):
    """Base of the coordinator's own errors."""


class UnknownJob(CoordinatorError):
    """Neither this coordinator's store nor the chain knows the job. (The chain's own
    revert is :class:`contracts.errors.JobNotFound`, the name API error bodies use.)"""

    error_name: ClassVar[str] = "JobNotFound"

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id}")


class PageNotFound(CoordinatorError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no dashboard file {name!r}: the dashboard is at /dashboard")


class NotOurJob(CoordinatorError):
    def __init__(self, job_id: str, coordinator: str) -> None:
        self.job_id = job_id
        self.coordinator = coordinator
        super().__init__(f"job {job_id} is coordinated by {coordinator}, not by this coordinator")


class InvalidTransition(CoordinatorError):
    def __init__(self, job_id: str, current: str, wanted: str) -> None:
        self.job_id = job_id
        self.current = current
        self.wanted = wanted
        super().__init__(f"job {job_id} cannot go from {current} to {wanted}")


class NotAuthorized(CoordinatorError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class Unavailable(CoordinatorError):
    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        super().__init__(f"{what} unavailable: {reason}")


class NoCandidates(MatchError):
    """No set of providers satisfies the job; ``reasons`` counts why providers were left out."""

    def __init__(
        self,
        needed: int,
        found: int,
        reasons: dict[str, int],
        filtered: Sequence[Candidate] = (),
    ) -> None:
        self.needed = needed
        self.found = found
        self.reasons = reasons
        self.filtered = list(filtered)
        """A sample of the providers left out, each with its own reason."""
        why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        super().__init__(f"need {needed} providers, {found} eligible ({why or 'empty book'})")
