"""Plain, frozen rows the store hands out (no SQLAlchemy objects leave the store)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from coordinator.states import JobState, ProviderState


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    state: JobState
    requester: str
    coordinator: str
    spec_cid: str
    redundancy: int
    mode: int
    price_cap: int
    fee: int
    assign_deadline: int
    commit_deadline: int
    settle_deadline: int
    created_block: int
    seed: int
    created_at: float
    updated_at: float
    result_cid: str | None = None
    failure_reason: str | None = None
    failure_provider: str | None = None
    settle_tx: str | None = None
    requirements: dict[str, Any] | None = None

    def to_row(self) -> dict[str, Any]:
        row = {k: getattr(self, k) for k in self.__dataclass_fields__}
        row["state"] = str(self.state)
        row["price_cap"] = str(self.price_cap)
        row["fee"] = str(self.fee)
        row["requirements"] = None if self.requirements is None else json.dumps(self.requirements)
        return row

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        m = dict(row._mapping)
        m["state"] = JobState(m["state"])
        m["price_cap"] = int(m["price_cap"])
        m["fee"] = int(m["fee"])
        m["requirements"] = json.loads(m["requirements"]) if m["requirements"] else None
        return cls(**m)


@dataclass(frozen=True)
class ProviderSlot:
    """One entry of a job's assignment, in on-chain order (``idx``)."""

    job_id: str
    idx: int
    address: str
    peer_id: str
    price: int
    state: ProviderState
    updated_at: float
    multiaddrs: tuple[str, ...] = field(default=())
    commit_hash: str | None = None
    commit_sig: str | None = None
    result_cid: str | None = None
    salt: str | None = None
    reveal_sig: str | None = None
    outcome: str | None = None
    detail: str | None = None

    def to_row(self) -> dict[str, Any]:
        row = {k: getattr(self, k) for k in self.__dataclass_fields__}
        row["state"] = str(self.state)
        row["price"] = str(self.price)
        row["multiaddrs"] = json.dumps(list(self.multiaddrs))
        return row

    @classmethod
    def from_row(cls, row: Any) -> ProviderSlot:
        m = dict(row._mapping)
        m["state"] = ProviderState(m["state"])
        m["price"] = int(m["price"])
        m["multiaddrs"] = tuple(json.loads(m["multiaddrs"]))
        return cls(**m)

    @property
    def active(self) -> bool:
        """Still expected to deliver (not failed, not replaced)."""
        return self.state not in (ProviderState.FAILED, ProviderState.REPLACED)


@dataclass(frozen=True)
class EventRecord:
    id: int
    job_id: str
    state: JobState
    at: float
    detail: dict[str, Any]


@dataclass(frozen=True)
class LogLine:
    provider: str
    at: float
    text: str
