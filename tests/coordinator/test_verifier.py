"""Verdicts follow the contract's rules, so a settlement built from one never reverts:
one quorum rule, commit-only entries only after the reveal window, no early settlement
while a live seat has no vote, on-chain reveals counted, billing as the market bills."""

from __future__ import annotations

import hashlib

from contracts.models import CompareMode, EntryKind, JobTerms
from coordinator.store import ProviderSlot
from coordinator.verification.verifier import VerdictKind, decide
from protocol import eip712
from protocol.identity import Identity
from protocol.ids import Address, JobId, Wei
from protocol.lifecycle import Outcome, SeatState

JOB = JobId(hashlib.sha256(b"job").digest())
DOMAIN = eip712.Eip712Domain(31337, Address("0x" + "12" * 20))
KEYS = [Identity.from_private_key("0x" + f"{i + 1:064x}") for i in range(5)]
T0 = 1_700_000_000
COMMIT, REVEAL = 600, 300
OPEN, CLOSE = T0 + COMMIT, T0 + COMMIT + REVEAL
RATE = 3_600_000  # one unit per millisecond-hour: pay == billed ms


def terms(redundancy: int, mode: CompareMode = CompareMode.EXACT) -> JobTerms:
    return JobTerms(
        requester=Address("0x" + "11" * 20),
        coordinator=Address("0x" + "22" * 20),
        redundancy=redundancy,
        mode=mode,
        price_cap=Wei(10**9),
        fee=Wei(1),
        timeout_ms=500_000,
        assign_deadline=T0,
        commit_window=COMMIT,
        reveal_window=REVEAL,
        spare_deadline=T0,
        settle_deadline=CLOSE + 1000,
    )


def slot(
    i: int,
    result: bytes | None,
    *,
    revealed: bool = True,
    runtime_ms: int = 10_000,
    price: int = 10**8,
) -> ProviderSlot:
    """Seat ``i``: committed off chain to ``result`` (None: never committed) and revealed."""
    who = KEYS[i]
    salt = hashlib.sha256(b"salt%d" % i).digest()
    fields: dict = {}
    state = SeatState.FAILED
    if result is not None:
        cid = eip712.digest_to_cid(hashlib.sha256(result).digest())
        digest = eip712.cid_to_result_digest(cid)
        commit = eip712.commit_hash(JOB, who.address, digest, runtime_ms, salt)
        fields["commit_hash"] = "0x" + commit.hex()
        fields["commit_sig"] = (
            "0x" + eip712.sign_commit(who.private_key, DOMAIN, JOB, who.address, commit).hex()
        )
        state = SeatState.COMMITTED
        if revealed:
            sig = eip712.sign_reveal(
                who.private_key, DOMAIN, JOB, who.address, digest, runtime_ms, salt
            )
            fields.update(
                result_cid=cid,
                runtime_ms=runtime_ms,
                salt="0x" + salt.hex(),
                reveal_sig="0x" + sig.hex(),
            )
            state = SeatState.REVEALED
    return ProviderSlot(
        "0x" + JOB.hex(),
        i,
        who.address,
        who.peer_id,
        Wei(price),
        state,
        0.0,
        rate_per_hour=Wei(RATE),
        assigned_at=T0,
        **fields,
    )


def test_agreement_pays_everyone_with_reveal_entries_and_bills_time_used() -> None:
    seats = [slot(0, b"a", runtime_ms=10_000), slot(1, b"a", runtime_ms=30_000)]
    verdict = decide(JOB, seats, terms(2), T0 + 60)
    assert verdict.kind is VerdictKind.SETTLE
    assert verdict.outcomes == {0: Outcome.PAID, 1: Outcome.PAID}
    assert verdict.settlement is not None
    assert [e.kind for e in verdict.settlement.entries] == [EntryKind.REVEAL] * 2
    assert [e.runtime_ms for e in verdict.settlement.entries] == [10_000, 30_000]
    assert [(s.price, s.rate_per_hour, s.assigned_at) for s in verdict.settlement.seats] == [
        (10**8, RATE, T0)
    ] * 2
    # billed = min(runtime, 2 x the smallest winning runtime, timeout); pay = rate x billed.
    assert [(b.billed_ms, b.pay) for b in verdict.bills.values()] == [
        (10_000, 10_000),
        (20_000, 20_000),
    ]


def test_pay_is_capped_by_the_price_and_billing_by_the_timeout() -> None:
    seats = [slot(0, b"a", runtime_ms=400_000, price=5), slot(1, b"a", runtime_ms=900_000)]
    bills = decide(JOB, seats, terms(2), T0 + 60).bills
    assert (bills[0].billed_ms, bills[0].pay) == (400_000, 5)
    assert (bills[1].billed_ms, bills[1].pay) == (500_000, 500_000)


def test_two_one_split_slashes_the_odd_one_out() -> None:
    verdict = decide(JOB, [slot(0, b"a"), slot(1, b"b"), slot(2, b"a")], terms(3), T0 + 60)
    assert verdict.outcomes == {0: Outcome.PAID, 1: Outcome.SLASHED, 2: Outcome.PAID}


def test_early_settlement_waits_for_a_live_seat_without_a_vote() -> None:
    # Seat 0 never committed, but its commit deadline has not passed: it may still vote.
    seats = [slot(0, None), slot(1, b"a"), slot(2, b"a")]
    early = decide(JOB, seats, terms(2), T0 + 60)
    assert early.kind is VerdictKind.WAIT and early.settlement is None
    assert early.settle_after == OPEN
    later = decide(JOB, seats, terms(2), OPEN + 1)
    assert later.kind is VerdictKind.SETTLE
    assert later.outcomes[0] is Outcome.RELEASED


def test_a_seat_committed_on_chain_stays_live_until_the_reveal_window_closes() -> None:
    seats = [slot(0, b"a"), slot(1, b"a"), slot(2, None)]
    seats[2] = ProviderSlot(**{**seats[2].__dict__, "onchain_commit": "0x" + "ab" * 32})
    verdict = decide(JOB, seats, terms(2), OPEN + 10)
    assert verdict.kind is VerdictKind.WAIT and verdict.settle_after == CLOSE
    after = decide(JOB, seats, terms(2), CLOSE + 1)  # now its unrevealed commit is withheld
    assert after.kind is VerdictKind.SETTLE and after.outcomes[2] is Outcome.SLASHED


def test_commit_only_entries_only_after_the_reveal_window_closed() -> None:
    seats = [slot(0, b"a"), slot(1, b"a"), slot(2, b"a", revealed=False)]
    early = decide(JOB, seats, terms(3), OPEN + 1)
    assert early.settlement is not None
    assert early.settlement.entries[2].kind is EntryKind.NONE
    assert early.outcomes[2] is Outcome.RELEASED and "of quorum 3" in early.reason
    late = decide(JOB, seats, terms(3), CLOSE + 1)
    assert late.settlement is not None
    assert late.settlement.entries[2].kind is EntryKind.COMMIT
    assert late.outcomes[2] is Outcome.SLASHED


def test_a_withheld_commit_raises_the_quorum_unless_left_out() -> None:
    seats = [slot(0, b"a"), slot(1, b"a", revealed=False)]
    assert decide(JOB, seats, terms(1), CLOSE + 1).kind is VerdictKind.NO_MAJORITY
    lenient = decide(JOB, seats, terms(1), CLOSE + 1, commits=False)
    assert lenient.kind is VerdictKind.SETTLE and lenient.outcomes[1] is Outcome.RELEASED


def test_an_on_chain_reveal_that_opened_the_commit_cancels_its_commit_only_slash() -> None:
    seats = [slot(0, b"a"), slot(1, b"a"), slot(2, b"b", revealed=False)]
    opened = seats[2].commit_hash
    seats[2] = ProviderSlot(
        **{
            **seats[2].__dict__,
            "onchain_reveal_hash": opened,
            "onchain_result": "0x" + hashlib.sha256(b"b").hexdigest(),
            "onchain_runtime_ms": 10_000,
            "onchain_votes": False,  # no receipt, no on-chain commit: recorded, not voting
        }
    )
    verdict = decide(JOB, seats, terms(3), CLOSE + 1)
    assert verdict.settlement is not None
    assert verdict.settlement.entries[2].kind is EntryKind.NONE
    assert verdict.outcomes[2] is Outcome.RELEASED


def test_a_voting_on_chain_reveal_counts_and_overrides_the_entry() -> None:
    seats = [slot(0, b"a"), slot(1, b"a", revealed=False)]
    seats[1] = ProviderSlot(
        **{
            **seats[1].__dict__,
            "onchain_reveal_hash": seats[1].commit_hash,
            "onchain_result": "0x"
            + eip712.cid_to_result_digest(
                eip712.digest_to_cid(hashlib.sha256(b"a").digest())
            ).hex(),
            "onchain_runtime_ms": 12_000,
            "onchain_votes": True,
        }
    )
    verdict = decide(JOB, seats, terms(2), OPEN + 5)
    assert verdict.kind is VerdictKind.SETTLE
    assert verdict.settlement is not None
    assert [e.kind for e in verdict.settlement.entries] == [EntryKind.REVEAL, EntryKind.NONE]
    assert verdict.outcomes == {0: Outcome.PAID, 1: Outcome.PAID}
    assert verdict.bills[1].billed_ms == 12_000


def test_redundancy_one_split_needs_a_tie_breaker_whose_loser_is_slashed() -> None:
    pair = [slot(0, b"cheat"), slot(1, b"a")]
    assert decide(JOB, pair, terms(1), T0 + 60).kind is VerdictKind.NO_MAJORITY
    verdict = decide(JOB, [*pair, slot(2, b"a")], terms(1), T0 + 60)
    assert verdict.outcomes == {0: Outcome.SLASHED, 1: Outcome.PAID, 2: Outcome.PAID}
    assert "2 of quorum 3" in verdict.reason


def test_a_tie_has_no_majority() -> None:
    assert decide(JOB, [slot(0, b"a"), slot(1, b"b")], terms(2), OPEN + 1).kind is (
        VerdictKind.NO_MAJORITY
    )
    # One reveal alone cannot beat a redundancy of two either.
    assert (
        decide(JOB, [slot(0, b"a"), slot(1, None)], terms(2), OPEN + 1).kind
        is VerdictKind.NO_MAJORITY
    )


def test_tolerance_names_the_winning_group_and_slashes_nobody() -> None:
    verdict = decide(
        JOB,
        [slot(0, b"a"), slot(1, b"b"), slot(2, b"c")],
        terms(3, CompareMode.TOLERANCE),
        T0 + 60,
        groups=[[0, 2], [1]],
    )
    assert verdict.settlement is not None and verdict.settlement.winners == 0b101
    assert verdict.outcomes == {0: Outcome.PAID, 1: Outcome.RELEASED, 2: Outcome.PAID}
