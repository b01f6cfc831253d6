"""Plain data the chain bindings take and return (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from contracts.eip712 import Signature
from protocol.ids import Address, JobId, Wei, parse_address


class JobStatus(IntEnum):
    NONE = 0
    OPEN = 1
    ASSIGNED = 2
    SETTLED = 3
    RECLAIMED = 4
    CANCELLED = 5


class CompareMode(IntEnum):
    EXACT = 0
    TOLERANCE = 1


class EntryKind(IntEnum):
    """What a settlement carries for one assigned provider."""

    NONE = 0  # nothing signed: stake released, not paid
    REVEAL = 1  # a signed Reveal: paid if in the majority, else slashed (exact jobs)
    COMMIT = 2  # a signed Commit never revealed: slashed (exact jobs)


MAX_REDUNDANCY = 5
MAX_BATCH = 64
MAX_SPEC_CID_LENGTH = 128
MAX_JOB_DURATION_S = 90 * 24 * 3600


@dataclass(frozen=True)
class Deployment:
    """Where the contracts live (``registry`` is the market contract itself today)."""

    chain_id: int
    token: Address
    registry: Address
    market: Address

    @classmethod
    def from_addresses(cls, chain_id: int, addresses: dict[str, str]) -> Deployment:
        return cls(
            chain_id=chain_id,
            token=parse_address(addresses["token"]),
            registry=parse_address(addresses["registry"]),
            market=parse_address(addresses["market"]),
        )


@dataclass(frozen=True)
class JobRequest:
    """What ``createJob`` takes. ``spec_digest`` is the sha2-256 digest inside the spec's
    CID; ``spec_cid`` the CID as text (emitted in the JobCreated event only)."""

    spec_digest: bytes
    spec_cid: str
    coordinator: Address
    redundancy: int
    price_cap: Wei
    fee: Wei
    assign_deadline: int
    commit_deadline: int
    settle_deadline: int
    mode: CompareMode = CompareMode.EXACT

    @property
    def escrow(self) -> Wei:
        return Wei((self.redundancy + 1) * self.price_cap + self.fee)


@dataclass(frozen=True)
class Assignment:
    provider: Address
    price: Wei


@dataclass(frozen=True)
class SignedEntry:
    """One provider's entry in a settlement; build with :meth:`reveal`, :meth:`commit` or
    :meth:`none`."""

    kind: EntryKind
    value: bytes = b"\0" * 32
    salt: bytes = b"\0" * 32
    signature: Signature | None = None

    @classmethod
    def reveal(cls, result: bytes, salt: bytes, signature: Signature) -> SignedEntry:
        return cls(EntryKind.REVEAL, result, salt, signature)

    @classmethod
    def commit(cls, commit_hash: bytes, signature: Signature) -> SignedEntry:
        return cls(EntryKind.COMMIT, commit_hash, b"\0" * 32, signature)

    @classmethod
    def none(cls) -> SignedEntry:
        return cls(EntryKind.NONE)


@dataclass(frozen=True)
class Settlement:
    """A settle call for one job: the full assignment in order, one entry per provider and,
    for tolerance jobs, the winning group as a bit mask over assignment indices."""

    job_id: JobId
    assignment: tuple[Assignment, ...]
    entries: tuple[SignedEntry, ...]
    winners: int = 0


@dataclass(frozen=True)
class JobTerms:
    """A job's immutable on-chain terms (the market stores only a commitment to them; they
    are read back from the job's JobCreated event)."""

    requester: Address
    coordinator: Address
    redundancy: int
    mode: CompareMode
    price_cap: Wei
    fee: Wei
    assign_deadline: int
    commit_deadline: int
    settle_deadline: int

    @property
    def escrow(self) -> Wei:
        return Wei((self.redundancy + 1) * self.price_cap + self.fee)

    def as_tuple(self) -> tuple[Any, ...]:
        """The Solidity ``Terms`` struct, in field order."""
        return (
            self.requester,
            self.coordinator,
            self.redundancy,
            int(self.mode),
            self.price_cap,
            self.fee,
            self.assign_deadline,
            self.commit_deadline,
            self.settle_deadline,
        )


@dataclass(frozen=True)
class JobInfo:
    """A job as the chain knows it: live status and count, terms and spec from its
    JobCreated event, assignment from its ProviderAssigned events."""

    job_id: JobId
    status: JobStatus
    assigned: int
    terms: JobTerms
    spec_digest: bytes
    spec_cid: str
    assignment: tuple[Assignment, ...]
    created_block: int

    @property
    def requester(self) -> Address:
        return self.terms.requester

    @property
    def coordinator(self) -> Address:
        return self.terms.coordinator

    @property
    def escrow(self) -> Wei:
        return self.terms.escrow


@dataclass(frozen=True)
class ProviderInfo:
    address: Address
    registered: bool
    group: int
    stake: Wei
    locked: Wei
    free: Wei
    earned: Wei  # payments credited to the provider, claimable with claim()
    completed: int
    slashed: int
    unbonding: Wei
    unbond_ready_at: int


@dataclass(frozen=True)
class AccountInfo:
    """A party's market account: ``owed`` can be claimed; ``nonce`` is the next job nonce."""

    owed: Wei
    lifetime: Wei
    nonce: int


@dataclass(frozen=True)
class ChainEvent:
    """A decoded log. ``contract`` is "token", "registry" or "market"."""

    name: str
    contract: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[ChainEvent, ...] = field(default=())

    def named(self, name: str) -> list[ChainEvent]:
        return [e for e in self.events if e.name == name]
