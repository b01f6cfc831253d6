"""Plain data the chain bindings take and return (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from eth_abi import encode
from eth_utils import keccak

from protocol.eip712 import Eip712Domain, Signature
from protocol.ids import Address, JobId, Wei, parse_address


class JobStatus(IntEnum):
    NONE = 0
    OPEN = 1
    ASSIGNED = 2
    SETTLED = 3
    RECLAIMED = 4
    CANCELLED = 5
    ABORTED = 6


class CompareMode(IntEnum):
    EXACT = 0
    TOLERANCE = 1


class EntryKind(IntEnum):
    """What a settlement carries for one seat."""

    NONE = 0  # nothing signed: the seat's on-chain commit/reveal (if any) is used
    REVEAL = 1  # a signed Reveal: a vote
    COMMIT = 2  # a signed Commit never revealed: withheld (after the reveal window)


MAX_REDUNDANCY = 5
EXTRA_SEATS = 2  # a spot-checker and a tie-breaker beyond the primaries
MAX_BATCH = 64
MAX_SPEC_CID_LENGTH = 128
MAX_JOB_DURATION_S = 90 * 24 * 3600
MS_PER_HOUR = 3_600_000


def max_seats(redundancy: int) -> int:
    """Seats a job may ever have: its primaries plus a spot-checker and a tie-breaker."""
    return redundancy + EXTRA_SEATS


def escrow_of(redundancy: int, price_cap: int, fee: int) -> Wei:
    """``(redundancy + 2) * priceCap + fee``: every seat's cap and the coordinator's fee."""
    return Wei(max_seats(redundancy) * price_cap + fee)


@dataclass(frozen=True)
class Deployment:
    """Where the contracts live (``registry`` is the market contract itself today)."""

    chain_id: int
    token: Address
    registry: Address
    market: Address

    @classmethod
    def from_addresses(cls, chain_id: int, addresses: dict[str, str]) -> Deployment:
        """A deployment from ``{"token", "registry", "market"}`` address text."""
        return cls(
            chain_id=chain_id,
            token=parse_address(addresses["token"]),
            registry=parse_address(addresses["registry"]),
            market=parse_address(addresses["market"]),
        )

    @property
    def domain(self) -> Eip712Domain:
        """The EIP-712 domain of the market's typed data."""
        return Eip712Domain(self.chain_id, self.market)


@dataclass(frozen=True)
class JobRequest:
    """What ``createJob`` takes. ``spec_digest`` is the sha2-256 digest inside the spec's
    CID; ``spec_cid`` the CID as text (emitted in the JobCreated event only). Windows are
    seconds; see ``contracts/README.md`` "Time" for what each bounds."""

    spec_digest: bytes
    spec_cid: str
    coordinator: Address
    redundancy: int
    price_cap: Wei
    fee: Wei
    timeout_ms: int
    assign_deadline: int
    commit_window: int
    reveal_window: int
    spare_deadline: int
    settle_deadline: int
    mode: CompareMode = CompareMode.EXACT

    @property
    def escrow(self) -> Wei:
        """What ``createJob`` takes from the requester (:func:`escrow_of`)."""
        return escrow_of(self.redundancy, self.price_cap, self.fee)


@dataclass(frozen=True)
class Seat:
    """One seat of a job's on-chain assignment (from its ProviderAssigned event)."""

    provider: Address
    price: Wei
    rate_per_hour: Wei
    assigned_at: int

    def as_tuple(self) -> tuple[Any, ...]:
        """The Solidity ``Seat`` struct, in field order."""
        return (parse_address(self.provider), self.price, self.rate_per_hour, self.assigned_at)


@dataclass(frozen=True)
class AcceptedSeat:
    """A seat to add, with the provider's signed consent (EIP-712 ``Accept``)."""

    provider: Address
    price: Wei
    rate_per_hour: Wei
    expiry: int
    signature: Signature

    def as_tuple(self) -> tuple[Any, ...]:
        """The Solidity ``AcceptedSeat`` struct, in field order (signature as v, r, s)."""
        sig = self.signature
        return (
            parse_address(self.provider),
            self.price,
            self.rate_per_hour,
            self.expiry,
            sig.v,
            sig.r,
            sig.s,
        )


@dataclass(frozen=True)
class SignedEntry:
    """One seat's entry in a settlement; build with :meth:`reveal`, :meth:`commit` or
    :meth:`none`."""

    kind: EntryKind
    value: bytes = b"\0" * 32
    runtime_ms: int = 0
    salt: bytes = b"\0" * 32
    signature: Signature | None = None

    @classmethod
    def reveal(
        cls, result: bytes, runtime_ms: int, salt: bytes, signature: Signature
    ) -> SignedEntry:
        """A revealed result: the result hash, runtime and salt, signed by the provider."""
        return cls(EntryKind.REVEAL, result, runtime_ms, salt, signature)

    @classmethod
    def commit(cls, commit_hash: bytes, signature: Signature) -> SignedEntry:
        """A commitment that was never opened, signed by the provider."""
        return cls(EntryKind.COMMIT, commit_hash, 0, b"\0" * 32, signature)

    @classmethod
    def none(cls) -> SignedEntry:
        """A seat that sent nothing usable."""
        return cls(EntryKind.NONE)

    def as_tuple(self) -> tuple[Any, ...]:
        """The Solidity ``SignedEntry`` struct (an unsigned entry carries a zero signature)."""
        sig = self.signature
        v, r, s = (sig.v, sig.r, sig.s) if sig is not None else (0, b"\0" * 32, b"\0" * 32)
        return (int(self.kind), self.value, self.runtime_ms, self.salt, v, r, s)


@dataclass(frozen=True)
class Settlement:
    """A settle call for one job: every seat in order, one entry per seat and, for
    tolerance jobs, the winning group as a bit mask over seat indices."""

    job_id: JobId
    seats: tuple[Seat, ...]
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
    timeout_ms: int
    assign_deadline: int
    commit_window: int
    reveal_window: int
    spare_deadline: int
    settle_deadline: int

    @property
    def escrow(self) -> Wei:
        """What the requester escrowed for these terms (:func:`escrow_of`)."""
        return escrow_of(self.redundancy, self.price_cap, self.fee)

    @property
    def max_seats(self) -> int:
        """Seats the job may ever have (:func:`max_seats`)."""
        return max_seats(self.redundancy)

    def as_tuple(self) -> tuple[Any, ...]:
        """The Solidity ``Terms`` struct, in field order."""
        return (
            parse_address(self.requester),
            parse_address(self.coordinator),
            self.redundancy,
            int(self.mode),
            self.price_cap,
            self.fee,
            self.timeout_ms,
            self.assign_deadline,
            self.commit_window,
            self.reveal_window,
            self.spare_deadline,
            self.settle_deadline,
        )

    def terms_hash(self) -> bytes:
        """``keccak256(abi.encode(terms))``: what a provider's Accept signs."""
        return keccak(encode([TERMS_ABI], [self.as_tuple()]))

    def commit_deadline(self, seat: Seat) -> int:
        """When ``seat`` must have committed: its assignment plus the commit window."""
        return seat.assigned_at + self.commit_window

    def reveal_open(self, seats: list[Seat] | tuple[Seat, ...]) -> int:
        """On-chain reveals are accepted after this (every seat's commit deadline)."""
        return max((self.commit_deadline(s) for s in seats), default=0)

    def reveal_close(self, seats: list[Seat] | tuple[Seat, ...]) -> int:
        """On-chain reveals are refused after this: reveal open plus the reveal window."""
        return self.reveal_open(seats) + self.reveal_window


TERMS_ABI = "(address,address,uint8,uint8,uint64,uint64,uint64,uint32,uint32,uint32,uint32,uint32)"
SEAT_ABI = "(address,uint64,uint64,uint32)"


@dataclass(frozen=True)
class JobInfo:
    """A job as the chain knows it: live status and seat count, terms and spec from its
    JobCreated event, seats from its ProviderAssigned events."""

    job_id: JobId
    status: JobStatus
    assigned: int
    terms: JobTerms
    spec_digest: bytes
    spec_cid: str
    seats: tuple[Seat, ...]
    created_block: int

    @property
    def requester(self) -> Address:
        """Who created and paid for the job."""
        return self.terms.requester

    @property
    def coordinator(self) -> Address:
        """The coordinator the job names."""
        return self.terms.coordinator

    @property
    def escrow(self) -> Wei:
        """What the requester escrowed."""
        return self.terms.escrow


@dataclass(frozen=True)
class OnChainEntry:
    """What a seat put on chain itself: its commitment and its reveal (fallback path)."""

    commit_hash: bytes
    result: bytes
    runtime_ms: int
    committed: bool
    revealed: bool
    votes: bool


@dataclass(frozen=True)
class CoordinatorInfo:
    address: Address
    bond: Wei
    unbonding: Wei
    unbond_ready_at: int


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

    @property
    def job_id(self) -> JobId | None:
        """The job the event is about; None for an event that names no job."""
        raw = self.args.get("jobId")
        return None if raw is None else JobId(bytes(raw))


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[ChainEvent, ...] = field(default=())

    def named(self, name: str) -> list[ChainEvent]:
        """The receipt's decoded events called ``name``, in log order."""
        return [e for e in self.events if e.name == name]
