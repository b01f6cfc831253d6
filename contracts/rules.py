"""The market's pure rules, as ``contracts/README.md`` states them (no I/O here).

The in-memory market (``contracts.fake``) decides jobs with these functions, and off-chain
code may use them to predict what the contract will do: the job-id and record hashes, the
one quorum rule, and billing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak

from contracts.models import MS_PER_HOUR, TERMS_ABI, JobTerms, Seat
from protocol.ids import JobId, parse_address

UINT64_MAX = 2**64 - 1


def job_id_for(requester: str, nonce: int) -> JobId:
    """keccak256(abi.encode(requester, nonce)), the id ``createJob`` gives a job."""
    return JobId(keccak(encode(["address", "uint256"], [parse_address(requester), nonce])))


def seat_chain(seats: Sequence[Seat]) -> bytes:
    """The hash chain over a job's seats in order, starting from 32 zero bytes:
    ``keccak256(abi.encodePacked(prev, provider, uint64 price, uint64 ratePerHour,
    uint32 assignedAt))``."""
    chain = b"\0" * 32
    for s in seats:
        packed = (
            chain
            + bytes.fromhex(parse_address(s.provider)[2:])
            + int(s.price).to_bytes(8, "big")
            + int(s.rate_per_hour).to_bytes(8, "big")
            + s.assigned_at.to_bytes(4, "big")
        )
        chain = keccak(packed)
    return chain


def job_commitment(terms: JobTerms, seats: Sequence[Seat]) -> bytes:
    """What the market's job slot commits to: keccak256(abi.encode(terms, chain)) with its
    low byte (status, seat count and flags live there) cleared."""
    encoded = encode([TERMS_ABI, "bytes32"], [terms.as_tuple(), seat_chain(seats)])
    return keccak(encoded)[:31] + b"\0"


@dataclass
class Tally:
    """What the quorum rule sees for each seat: a vote (result and runtime), withheld, or
    nothing. ``votes`` and ``withheld`` are bit masks over seat indices."""

    results: list[bytes]
    runtimes: list[int]
    votes: int = 0
    withheld: int = 0

    @classmethod
    def empty(cls, seats: int) -> Tally:
        """A tally of ``seats`` seats with nothing received yet."""
        return cls([b"\0" * 32] * seats, [0] * seats)

    def vote(self, seat: int, result: bytes, runtime_ms: int) -> None:
        """Record ``seat``'s revealed result and runtime as its vote."""
        self.results[seat], self.runtimes[seat] = result, runtime_ms
        self.votes |= 1 << seat

    def withhold(self, seat: int) -> None:
        """Record that ``seat`` committed but never revealed."""
        self.withheld |= 1 << seat


@dataclass(frozen=True)
class Decision:
    best: int  # bit mask of the largest group of equal votes (first on a tie)
    quorum: int
    decided: bool
    slash: int = 0


def popcount(mask: int) -> int:
    """The number of seats set in the bit mask ``mask``."""
    return bin(mask).count("1")


def best_group(tally: Tally) -> int:
    """The largest group of equal votes, as a bit mask; the first such group on a tie."""
    best = best_count = 0
    n = len(tally.results)
    for i in range(n):
        if not tally.votes >> i & 1:
            continue
        mask = 0
        for k in range(i, n):
            if tally.votes >> k & 1 and tally.results[k] == tally.results[i]:
                mask |= 1 << k
        if popcount(mask) > best_count:
            best, best_count = mask, popcount(mask)
    return best


def quorum(tally: Tally, redundancy: int) -> int:
    """``max(redundancy, votes + withheld)``."""
    return max(redundancy, popcount(tally.votes | tally.withheld))


def decide(tally: Tally, redundancy: int) -> Decision:
    """THE quorum rule: decided when ``2 * |best| > quorum``. ``slash`` is what an exact
    job slashes when decided: every vote outside the best group and every withheld seat."""
    best = best_group(tally)
    q = quorum(tally, redundancy)
    return Decision(best, q, 2 * popcount(best) > q, (tally.votes & ~best) | tally.withheld)


def billing_cap(winning_runtimes: Iterable[int], timeout_ms: int) -> int:
    """``min(2 * m, timeoutMs)``, ``m`` the smallest winning runtime: no winner is billed more."""
    return min(2 * min(winning_runtimes, default=UINT64_MAX), timeout_ms)


def billed_ms(runtimes: Sequence[int], winners: int, timeout_ms: int) -> list[int]:
    """Per seat: ``min(runtime, 2 * m, timeoutMs)`` for winners (``m`` the smallest winning
    runtime), 0 for everyone else."""
    cap = billing_cap((r for i, r in enumerate(runtimes) if winners >> i & 1), timeout_ms)
    return [min(r, cap) if winners >> i & 1 else 0 for i, r in enumerate(runtimes)]


def pay_for(price: int, rate_per_hour: int, billed: int) -> int:
    """``min(price, ceil(ratePerHour * billed / 3_600_000))``."""
    return min(price, -(-rate_per_hour * billed // MS_PER_HOUR))


def pack_paid_and_billed(pay: int, billed: int) -> int:
    """``pay << 64 | billed``, one entry of JobSettled's ``paidAndBilled``."""
    return pay << 64 | billed


def unpack_paid_and_billed(value: int) -> tuple[int, int]:
    """(pay, billed ms) of one ``paidAndBilled`` entry."""
    return value >> 64, value & UINT64_MAX
