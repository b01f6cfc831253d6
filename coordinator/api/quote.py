"""``POST /quote``: what a spec would get if it were submitted now, as a dry run.

The spec is validated by the same parser as a submitted job's, then matched against the
live book by a throwaway :class:`~coordinator.matching.matcher.Matcher` without exploration: nothing
is reserved, nobody is offered a seat, and the book's columns are only read. Each
redundancy choice (``auto`` = one primary, 2, 3) is matched as the job would be: first on
free job slots ("now"), then allowing a queue at busy providers ("queued"). The inputs are
not uploaded yet: the requester may say how many bytes they hold (``input_bytes``), and
providers whose advertised input limit is lower are filtered as matching would filter them.
"""

from __future__ import annotations

from dataclasses import replace

from pydantic import BaseModel, Field

from coordinator.errors import NoCandidates
from coordinator.matching.columns import MAX_JOB_SLOTS, ProviderColumns
from coordinator.matching.matcher import Candidate, Match, Matcher
from coordinator.matching.requirements import Requirements, requirements_for
from protocol.registry import MAX_SPEC_BYTES
from protocol.spec import JobSpec
from protocol.views import CandidateView, Quote, QuotedProvider, QuoteOption, Start

QUOTE_MAX_BYTES = 2 * MAX_SPEC_BYTES + 1024
"""A spec of at most ``MAX_SPEC_BYTES`` as a JSON string: escaping (newlines, quotes) may
double it; the spec's own size is checked again by the spec parser."""

MAX_QUOTED_INPUT_BYTES = 1 << 50
"""Largest input size a quote takes (1 PiB: past every provider's limit anyway)."""

REDUNDANCY_CHOICES: tuple[tuple[str, int], ...] = (("auto", 1), ("2", 2), ("3", 3))
"""(label, providers seated on chain): ``auto`` seats one primary."""


class QuoteRequest(BaseModel):
    spec: str = Field(
        max_length=QUOTE_MAX_BYTES,
        description=f"the job spec as YAML or JSON text (at most {MAX_SPEC_BYTES} bytes)",
    )
    input_bytes: int = Field(
        default=0,
        ge=0,
        le=MAX_QUOTED_INPUT_BYTES,
        description="bytes of the job's inputs, as far as the requester knows them before "
        "uploading (0: not known); providers advertising a lower input limit are filtered",
    )


def _requirements(spec: JobSpec, seats: int, input_bytes: int) -> Requirements:
    exact = spec.verification.compare == "exact"
    req = requirements_for(
        spec,
        count=seats,
        price_cap=spec.price.max_per_provider,
        exact=exact,
        input_bytes=input_bytes,
    )
    # As in matching: a lone primary must be one another operator could check.
    return replace(req, checkable=seats == 1)


def _match(
    matcher: Matcher, req: Requirements
) -> tuple[Start, Match | None, dict[str, int], list[Candidate]]:
    try:
        return "now", matcher.match(req), {}, []
    except NoCandidates as now:
        reasons = now.reasons
    try:
        return "queued", matcher.match(replace(req, queue=MAX_JOB_SLOTS)), reasons, []
    except NoCandidates as queued:
        return "unmatched", None, reasons, queued.filtered


def _option(
    matcher: Matcher, spec: JobSpec, label: str, seats: int, input_bytes: int
) -> QuoteOption:
    start, match, reasons, filtered = _match(matcher, _requirements(spec, seats, input_bytes))
    declared = str(spec.verification.redundancy)
    chosen = [] if match is None else match.chosen
    return QuoteOption(
        redundancy=label,
        seats=seats,
        requested=declared == label or (declared == "1" and label == "auto"),
        start=start,
        providers=[
            QuotedProvider(
                address=c.address,
                peer_id=c.peer_id,
                price=str(c.price),
                rate_per_hour=str(c.rate_per_hour),
                score=c.score,
            )
            for c in chosen
        ],
        total=str(sum(c.price for c in chosen)) if chosen else None,
        eligible=0 if match is None else match.eligible,
        filtered=reasons,
        candidates=[
            CandidateView(**c.to_json())
            for c in (filtered if match is None else match.candidates)
            if not c.chosen
        ],
    )


def quote(spec: JobSpec, cols: ProviderColumns, stake_factor: int, input_bytes: int = 0) -> Quote:
    """Match ``spec`` (with inputs of ``input_bytes``, 0: not known) for every redundancy
    choice without touching the book."""
    matcher = Matcher(cols, stake_factor=stake_factor, exploration_share=0.0)
    capable, incapable = matcher.capable(_requirements(spec, 1, input_bytes))
    return Quote(
        name=spec.name,
        gpus=spec.resources.gpus,
        duration_s=spec.billed_duration_s,
        price_cap=str(spec.price.max_per_provider),
        exact=spec.verification.compare == "exact",
        providers_in_book=len(cols),
        capable=capable,
        incapable=incapable,
        options=[
            _option(matcher, spec, label, seats, input_bytes) for label, seats in REDUNDANCY_CHOICES
        ],
    )
