"""Deciding a job's outcome from its providers' commitments and reveals.

Pure logic over the stored slots (the driver does the I/O). For ``exact`` jobs equal
result digests agree; for ``tolerance`` jobs the caller groups results numerically
(:func:`proofs.compare.group_results`) and passes the groups in. The quorum rule is the
contract's: a result wins when its group holds more than half of
``max(signed entries, redundancy)``, so a verdict computed here never reverts on chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from contracts.eip712 import Signature
from contracts.models import Assignment, Settlement, SignedEntry
from coordinator.states import Outcome, ProviderState
from coordinator.store import ProviderSlot
from protocol.eip712 import cid_to_result_digest
from protocol.ids import Address, JobId, Wei


@dataclass(frozen=True)
class Verdict:
    """The settlement to submit, or why there is none yet."""

    settlement: Settlement | None
    outcomes: dict[int, Outcome]
    result_cid: str | None
    reason: str

    @property
    def decided(self) -> bool:
        return self.settlement is not None


def _entry(slot: ProviderSlot, *, commits_count: bool) -> SignedEntry:
    if slot.state is ProviderState.REVEALED and slot.result_cid and slot.salt and slot.reveal_sig:
        return SignedEntry.reveal(
            cid_to_result_digest(slot.result_cid),
            bytes.fromhex(slot.salt[2:]),
            Signature.from_bytes(bytes.fromhex(slot.reveal_sig[2:])),
        )
    if commits_count and slot.commit_hash and slot.commit_sig:
        # A signed commitment binds: never revealing it loses like a wrong result.
        return SignedEntry.commit(
            bytes.fromhex(slot.commit_hash[2:]),
            Signature.from_bytes(bytes.fromhex(slot.commit_sig[2:])),
        )
    return SignedEntry.none()


def exact_groups(slots: Sequence[ProviderSlot]) -> list[list[int]]:
    """Revealed slot indices grouped by result CID, largest group first (ties: earliest)."""
    groups: dict[str, list[int]] = {}
    for slot in slots:
        if slot.state is ProviderState.REVEALED and slot.result_cid:
            groups.setdefault(slot.result_cid, []).append(slot.idx)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def decide(
    job_id: JobId,
    slots: Sequence[ProviderSlot],
    redundancy: int,
    *,
    exact: bool,
    groups: list[list[int]] | None = None,
) -> Verdict:
    """The verdict over every slot of the on-chain assignment (in index order)."""
    ordered = sorted(slots, key=lambda s: s.idx)
    entries = [_entry(s, commits_count=exact) for s in ordered]
    signed = sum(1 for e in entries if e.signature is not None)
    quorum = max(signed, redundancy)
    grouping = exact_groups(ordered) if groups is None else groups
    best = grouping[0] if grouping else []
    if 2 * len(best) <= quorum:
        sizes = [len(g) for g in grouping]
        return Verdict(None, {}, None, f"no majority: groups {sizes} of quorum {quorum}")
    winners = set(best)
    outcomes: dict[int, Outcome] = {}
    for slot, entry in zip(ordered, entries, strict=True):
        if slot.idx in winners:
            outcomes[slot.idx] = Outcome.PAID
        elif exact and entry.signature is not None:
            outcomes[slot.idx] = Outcome.SLASHED
        else:
            outcomes[slot.idx] = Outcome.RELEASED
    mask = 0 if exact else sum(1 << i for i in winners)
    settlement = Settlement(
        job_id=job_id,
        assignment=tuple(Assignment(Address(s.address), Wei(s.price)) for s in ordered),
        entries=tuple(entries),
        winners=mask,
    )
    result = next(s.result_cid for s in ordered if s.idx in winners)
    return Verdict(settlement, outcomes, result, f"{len(best)} of quorum {quorum} agree")
