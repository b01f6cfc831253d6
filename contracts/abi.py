"""The committed contract artifacts (ABI and bytecode, written by ``contracts.build``), and
the contract's structs as tuples (what web3 encodes) and back from events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from contracts.models import ChainEvent, CompareMode, JobRequest, JobTerms, Seat, Settlement
from protocol.ids import JobId, Wei, parse_address

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str


MARKET_PARTS = ("JobMarket", "JobMarketExt")
"""The market's address serves JobMarket's functions and, through its fallback, those of
JobMarketExt (when the artifacts keep them apart)."""


@cache
def load_artifact(name: str) -> Artifact:
    """The artifact of one contract: TestUSD, JobMarket or JobMarketExt."""
    data = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
    return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"])


@cache
def market_abi() -> list[dict[str, Any]]:
    """Everything callable and emitted at the market's address: JobMarket's ABI and the
    functions, events and errors of JobMarketExt, each once."""
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    merged: list[dict[str, Any]] = []
    for part in MARKET_PARTS:
        if not (ARTIFACTS_DIR / f"{part}.json").exists():
            continue
        for item in load_artifact(part).abi:
            if part != MARKET_PARTS[0] and item["type"] in ("constructor", "fallback", "receive"):
                continue
            key = (
                item["type"],
                str(item.get("name", "")),
                tuple(i["type"] for i in item.get("inputs", [])),
            )
            if key not in seen:
                seen.add(key)
                merged.append(item)
    return merged


def all_abis() -> list[list[dict[str, Any]]]:
    """The token's ABI and the market's (see :func:`market_abi`)."""
    return [load_artifact("TestUSD").abi, market_abi()]


# ------------------------------------------------------------- struct encodings
EMPTY_TERMS = ("0x" + "00" * 20, "0x" + "00" * 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
"""All-zero ``Terms``: what a settlement of an unknown job carries (the market skips it)."""


def job_params_tuple(r: JobRequest) -> tuple[Any, ...]:
    """``createJob``'s ``JobParams`` struct."""
    return (
        r.spec_digest,
        r.spec_cid.encode(),
        parse_address(r.coordinator),
        r.redundancy,
        int(r.mode),
        r.price_cap,
        r.fee,
        r.timeout_ms,
        r.assign_deadline,
        r.commit_window,
        r.reveal_window,
        r.spare_deadline,
        r.settle_deadline,
    )


def settlement_tuple(s: Settlement, terms: tuple[Any, ...]) -> tuple[Any, ...]:
    """The ``Settlement`` struct: job id, terms, seats, one signed entry per seat, winners."""
    return (
        bytes(s.job_id),
        terms,
        [seat.as_tuple() for seat in s.seats],
        [e.as_tuple() for e in s.entries],
        s.winners,
    )


def seat_from_event(e: ChainEvent) -> tuple[int, Seat]:
    """(seat index, seat) of a ProviderAssigned event."""
    a = e.args
    seat = Seat(
        parse_address(a["provider"]), Wei(a["price"]), Wei(a["ratePerHour"]), a["assignedAt"]
    )
    return int(a["seat"]), seat


@dataclass(frozen=True)
class CreatedJob:
    """What a JobCreated event records: the job, its terms, the spec and the block (the one
    decoder of that event)."""

    job_id: JobId
    terms: JobTerms
    spec_digest: bytes
    spec_cid: str
    block: int

    @classmethod
    def from_event(cls, e: ChainEvent) -> CreatedJob:
        """The job a decoded ``JobCreated`` event opened: its terms, spec and block."""
        a = e.args
        terms = JobTerms(
            requester=parse_address(a["requester"]),
            coordinator=parse_address(a["coordinator"]),
            redundancy=a["redundancy"],
            mode=CompareMode(a["mode"]),
            price_cap=Wei(a["priceCap"]),
            fee=Wei(a["fee"]),
            timeout_ms=a["timeoutMs"],
            assign_deadline=a["assignDeadline"],
            commit_window=a["commitWindow"],
            reveal_window=a["revealWindow"],
            spare_deadline=a["spareDeadline"],
            settle_deadline=a["settleDeadline"],
        )
        cid = bytes(a["specCid"]).decode("utf-8", errors="replace")
        return cls(JobId(bytes(a["jobId"])), terms, bytes(a["specDigest"]), cid, e.block_number)
