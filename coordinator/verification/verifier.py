"""Deciding a job's outcome from its seats' commitments and reveals, as the contract will.

Pure logic over the stored seats (the driver does the I/O). It mirrors the contract's
``_settlementTally`` and its one quorum rule (``contracts/README.md``, "Deciding a job"), so
a settlement built here never reverts on chain:

* per seat, a **vote** is a voting on-chain reveal (it overrides anything else) or the
  provider's signed Reveal; **withheld** is a signed Commit nobody opened, sent only once
  the reveal window closed (``terms.reveal_close(seats)``), or an on-chain commit never
  revealed by then;
* ``quorum = max(redundancy, votes + withheld)``; the best group (largest, first on a tie)
  decides when ``2 * |best| > quorum``;
* before the reveal window closes, a settlement is valid only when every *live* seat (its
  commit deadline not passed, or it committed on chain) has a vote.

For ``exact`` jobs equal result digests agree and every other vote and every withheld seat
is slashed; for ``tolerance`` jobs the caller groups results numerically
(:func:`coordinator.verification.outputs.tolerance_groups`) and nobody is slashed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from contracts.models import JobTerms, Settlement, SignedEntry
from coordinator.chain.billing import Bill, bills
from coordinator.store import ProviderSlot
from protocol.eip712 import Signature, cid_to_result_digest, digest_to_cid
from protocol.ids import JobId
from protocol.lifecycle import Outcome, SeatState


class VerdictKind(StrEnum):
    SETTLE = "settle"  # the settlement below is valid now
    WAIT = "wait"  # decided, but a live seat may still vote: valid once ``settle_after`` passed
    NO_MAJORITY = "no_majority"  # no group holds a majority of the quorum


@dataclass(frozen=True)
class Vote:
    result: bytes
    runtime_ms: int
    cid: str


@dataclass(frozen=True)
class ChainCount:
    """What the contract will count, seat by seat."""

    votes: dict[int, Vote]
    withheld: frozenset[int]
    entries: tuple[SignedEntry, ...]
    live_without_vote: tuple[int, ...]
    """Seats that block an early settlement (only while the reveal window is open)."""

    def quorum(self, redundancy: int) -> int:
        """The contract's one quorum rule."""
        return max(redundancy, len(self.votes) + len(self.withheld))


@dataclass(frozen=True)
class Verdict:
    """The settlement to submit, or why there is none yet."""

    kind: VerdictKind
    reason: str
    settlement: Settlement | None = None
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    result_cid: str | None = None
    bills: dict[int, Bill] = field(default_factory=dict)
    settle_after: int = 0

    @property
    def decided(self) -> bool:
        return self.kind is VerdictKind.SETTLE


def _hex(value: str | None) -> bytes:
    assert value is not None
    return bytes.fromhex(value[2:])


def _signature(value: str | None) -> Signature:
    return Signature.from_bytes(_hex(value))


def _reveal_of(slot: ProviderSlot) -> SignedEntry | None:
    """The provider's signed Reveal, when we hold one."""
    if (
        slot.state is SeatState.REVEALED
        and slot.result_cid
        and slot.salt
        and slot.reveal_sig
        and slot.runtime_ms is not None
    ):
        return SignedEntry.reveal(
            cid_to_result_digest(slot.result_cid),
            slot.runtime_ms,
            _hex(slot.salt),
            _signature(slot.reveal_sig),
        )
    return None


def tally(
    slots: Sequence[ProviderSlot], terms: JobTerms, now: int, *, commits: bool = True
) -> ChainCount:
    """Count each on-chain seat the way ``settle`` will at time ``now``.

    ``commits=False`` leaves signed Commits out even after the reveal window (the
    coordinator may; an on-chain commit never revealed still counts as withheld).
    """
    ordered = sorted(slots, key=lambda s: s.idx)
    seats = [s.seat() for s in ordered]
    early = now <= terms.reveal_close(seats)
    votes: dict[int, Vote] = {}
    withheld: set[int] = set()
    entries: list[SignedEntry] = []
    live: list[int] = []
    for slot in ordered:
        entry = SignedEntry.none()
        reveal = _reveal_of(slot)
        if slot.onchain_revealed and slot.onchain_votes:
            # The contract uses the on-chain reveal whatever the entry says: send nothing.
            result = _hex(slot.onchain_result)
            runtime = slot.onchain_runtime_ms or 0
            votes[slot.idx] = Vote(result, runtime, slot.result_cid or digest_to_cid(result))
        elif reveal is not None:
            entry = reveal
            votes[slot.idx] = Vote(reveal.value, reveal.runtime_ms, str(slot.result_cid))
        elif (
            commits
            and not early
            and slot.commit_hash is not None
            and slot.commit_sig is not None
            and slot.onchain_reveal_hash != slot.commit_hash
        ):
            # A signed commitment binds: never opening it counts as withheld.
            entry = SignedEntry.commit(_hex(slot.commit_hash), _signature(slot.commit_sig))
            withheld.add(slot.idx)
        elif slot.onchain_commit is not None and not slot.onchain_revealed and not early:
            withheld.add(slot.idx)
        deadline = slot.commit_deadline(terms.commit_window)
        assert deadline is not None
        if early and slot.idx not in votes and (slot.onchain_commit is not None or now <= deadline):
            live.append(slot.idx)
        entries.append(entry)
    return ChainCount(votes, frozenset(withheld), tuple(entries), tuple(live))


def exact_groups(votes: dict[int, Vote]) -> list[list[int]]:
    """Voting seats grouped by result, largest first, first-seen first on a tie (the
    contract's ``_bestGroup``)."""
    groups: dict[bytes, list[int]] = {}
    for idx in sorted(votes):
        groups.setdefault(votes[idx].result, []).append(idx)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def decide(
    job_id: JobId,
    slots: Sequence[ProviderSlot],
    terms: JobTerms,
    now: int,
    *,
    groups: list[list[int]] | None = None,
    commits: bool = True,
) -> Verdict:
    """The verdict over every on-chain seat at time ``now``.

    ``groups`` (tolerance jobs only) are the voting seats grouped by numeric agreement,
    largest first; exact jobs group equal results themselves.
    """
    onchain = sorted((s for s in slots if s.state.on_chain), key=lambda s: s.idx)
    t = tally(onchain, terms, now, commits=commits)
    exact = groups is None
    grouping = exact_groups(t.votes) if groups is None else [g for g in groups if g]
    quorum = t.quorum(terms.redundancy)
    best = grouping[0] if grouping else []
    if 2 * len(best) <= quorum:
        sizes = [len(g) for g in grouping]
        return Verdict(VerdictKind.NO_MAJORITY, f"no majority: groups {sizes} of quorum {quorum}")
    winners = set(best)
    slashed = (set(t.votes) - winners) | set(t.withheld) if exact else set()
    outcomes = {
        s.idx: Outcome.PAID
        if s.idx in winners
        else Outcome.SLASHED
        if s.idx in slashed
        else Outcome.RELEASED
        for s in onchain
    }
    settlement = Settlement(
        job_id=job_id,
        seats=tuple(s.seat() for s in onchain),
        entries=t.entries,
        winners=0 if exact else sum(1 << i for i in winners),
    )
    by_idx = {s.idx: s for s in onchain}
    figures = bills({i: t.votes[i].runtime_ms for i in winners}, by_idx, terms.timeout_ms)
    reason = f"{len(best)} of quorum {quorum} agree"
    if t.live_without_vote:
        deadlines = [
            by_idx[i].commit_deadline(terms.commit_window) or 0 for i in t.live_without_vote
        ]
        committed = any(by_idx[i].onchain_commit is not None for i in t.live_without_vote)
        after = terms.reveal_close([s.seat() for s in onchain]) if committed else max(deadlines)
        return Verdict(
            VerdictKind.WAIT,
            f"{reason}; seats {list(t.live_without_vote)} may still vote until {after}",
            settle_after=after,
        )
    return Verdict(
        VerdictKind.SETTLE,
        reason,
        settlement,
        outcomes,
        t.votes[min(winners)].cid,
        figures,
    )
