"""Windows and fallback paths, the same on the in-memory fake and on Anvil: on-chain
commits and reveals (with and without a receipt), the live-seat rule for early settlement,
commit-only slashing after the reveal window, spare seats, finalize vs reclaim, abort and
settleBatch skipping.

Times are pinned with ``market.next_at`` so every boundary is tested exactly.
"""

from __future__ import annotations

import pytest
from eth_utils import keccak

from contracts import errors as E
from contracts.client import ChainClient
from contracts.models import JobStatus, OnChainEntry, Receipt, Settlement
from protocol.ids import JobId
from tests.contracts.harness import (
    BAD,
    CAP,
    COMMIT_WINDOW,
    FACTOR,
    FEE,
    GOOD,
    PRICE,
    RATE,
    REVEAL_WINDOW,
    Market,
    Work,
)

pytestmark = pytest.mark.integration

LOCK = FACTOR * PRICE
ESCROW_R2 = 4 * CAP + FEE


def seated_at(m: Market, redundancy: int, *providers: int, **kw: object) -> tuple[JobId, int]:
    """A job whose ``providers`` are all seated in one block at a pinned time t0."""
    job_id = m.create(redundancy, **kw)  # type: ignore[arg-type]
    t0 = m.now() + 10
    m.next_at(t0)
    m.assign(job_id, *providers)
    return job_id, t0


def test_on_chain_reveals_only_inside_the_reveal_window(market: Market) -> None:
    job_id, t0 = seated_at(market, 2, 0, 1, 2)
    seats = market.seats(job_id)
    jid = bytes(job_id)
    opens, close = t0 + COMMIT_WINDOW, t0 + COMMIT_WINDOW + REVEAL_WINDOW
    assert (market.reveal_open(job_id), market.reveal_close(job_id)) == (opens, close)
    works = [Work(GOOD, 120_000), Work(GOOD, 90_000), Work(GOOD)]
    p0, p1, p2 = market.providers[:3]
    receipt0 = market.receipt_sig(job_id, 0, seats[0], works[0])

    def reveal(client: ChainClient, seat: int, **kw: bytes) -> Receipt:
        w = works[seat]
        return client.reveal_on_chain(job_id, seat, w.result, w.runtime_ms, w.salt, **kw)

    market.next_at(opens)
    with pytest.raises(E.RevealNotOpen) as early:
        reveal(p0, 0, receipt_signature=receipt0)
    assert early.value.fields == {"jobId": jid, "opensAt": opens}
    market.next_at(opens + 1)
    receipt = reveal(p0, 0, receipt_signature=receipt0)
    assert receipt.named("ProviderRevealed")[0].args == {
        "jobId": jid,
        "provider": p0.address,
        "seat": 0,
        "result": GOOD,
        "runtimeMs": 120_000,
        "salt": works[0].salt,
        "votes": True,
    }
    assert p0.on_chain_entry(job_id, 0) == OnChainEntry(
        market.commit_hash(job_id, seats[0], works[0]), GOOD, 120_000, False, True, True
    )
    with pytest.raises(E.AlreadyRevealed) as again:
        reveal(p0, 0, receipt_signature=receipt0)
    assert again.value.fields == {"jobId": jid, "provider": p0.address}
    replayed = market.receipt_sig(job_id, 1, seats[1], works[1])  # seat 1's, not seat 2's
    with pytest.raises(E.InvalidReceipt) as bad_receipt:
        reveal(p2, 2, receipt_signature=replayed)
    assert bad_receipt.value.fields == {"jobId": jid, "provider": p2.address}
    with pytest.raises(E.NotAssignedProvider):
        p1.reveal_on_chain(job_id, 5, GOOD, 1, GOOD)
    market.next_at(close)
    recorded = reveal(p1, 1)  # no receipt: recorded, no vote
    assert recorded.named("ProviderRevealed")[0].args["votes"] is False
    assert p1.on_chain_entry(job_id, 1).votes is False
    market.next_at(close + 1)
    with pytest.raises(E.RevealWindowClosed) as late:
        reveal(p2, 2)
    assert late.value.fields == {"jobId": jid, "closedAt": close}


def test_on_chain_commit_then_reveal_by_anyone(market: Market) -> None:
    job_id, t0 = seated_at(market, 2, 0, 1)
    seats = market.seats(job_id)
    jid = bytes(job_id)
    p0, p1 = market.providers[:2]
    w0, w1 = Work(GOOD, 120_000), Work(GOOD, 80_000)
    h0 = market.commit_hash(job_id, seats[0], w0)
    with pytest.raises(E.NotAssignedProvider) as stranger:
        market.providers[2].commit_on_chain(job_id, 0, h0)
    assert stranger.value.fields == {"jobId": jid, "caller": market.providers[2].address}
    with pytest.raises(E.NotAssignedProvider):
        p0.commit_on_chain(job_id, 1, h0)  # not its seat
    deadline = t0 + COMMIT_WINDOW
    market.next_at(deadline - 1)
    receipt = p0.commit_on_chain(job_id, 0, h0)
    assert receipt.named("ProviderCommitted")[0].args == {
        "jobId": jid,
        "provider": p0.address,
        "seat": 0,
        "commitHash": h0,
    }
    market.next_at(deadline)
    with pytest.raises(E.AlreadyCommitted):
        p0.commit_on_chain(job_id, 0, h0)
    p1.commit_on_chain(job_id, 1, market.commit_hash(job_id, seats[1], w1))  # at the deadline
    market.next_at(deadline + 1)
    with pytest.raises(E.CommitDeadlinePassed) as late:
        p0.commit_on_chain(job_id, 0, h0)
    assert late.value.fields == {"jobId": jid, "deadline": deadline}
    with pytest.raises(E.CommittedOnChain):
        market.coordinator.abort(job_id)
    market.next_at(t0 + COMMIT_WINDOW + 1)
    wrong = Work(BAD, w0.runtime_ms, w0.salt)
    with pytest.raises(E.RevealMismatch):
        p0.reveal_on_chain(job_id, 0, wrong.result, wrong.runtime_ms, wrong.salt)
    # anyone may post a provider's signed reveal
    with pytest.raises(E.InvalidSignature):
        market.coordinator.reveal_on_chain(
            job_id, 0, w0.result, w0.runtime_ms, w0.salt,
            provider_signature=market.reveal_sig(job_id, seats[0], wrong),
        )  # fmt: skip
    market.coordinator.reveal_on_chain(
        job_id, 0, w0.result, w0.runtime_ms, w0.salt,
        provider_signature=market.reveal_sig(job_id, seats[0], w0),
    )  # fmt: skip
    assert p0.on_chain_entry(job_id, 0) == OnChainEntry(h0, GOOD, 120_000, True, True, True)
    market.deployer.reveal_on_chain(
        job_id, 1, w1.result, w1.runtime_ms, w1.salt,
        provider_signature=market.reveal_sig(job_id, seats[1], w1),
        receipt_signature=market.receipt_sig(job_id, 1, seats[1], w1),
    )  # fmt: skip
    # a voting on-chain reveal overrides the settlement's entry for its seat
    settlement = market.settlement(job_id, [Work(BAD), None])
    receipt = market.coordinator.settle(settlement)
    args = receipt.named("JobSettled")[0].args
    assert (args["result"], args["winners"], args["slashMask"]) == (GOOD, 0b11, 0)
    # m = 80 s: billed 120 s and 80 s
    assert args["paidAndBilled"] == [120_000 << 64 | 120_000, 80_000 << 64 | 80_000]


def test_live_seats_block_an_early_settlement(market: Market) -> None:
    job_id, t0 = seated_at(market, 1, 0, 1)
    market.next_at(t0 + COMMIT_WINDOW)  # seat 1 may still commit
    with pytest.raises(E.SettleTooEarly) as early:
        market.coordinator.settle(market.settlement(job_id, [GOOD, None]))
    assert early.value.fields == {"jobId": bytes(job_id), "seat": 1}
    market.next_at(t0 + COMMIT_WINDOW + 1)  # its commit deadline passed: it is not live
    receipt = market.coordinator.settle(market.settlement(job_id, [GOOD, None]))
    assert receipt.named("JobSettled")[0].args["winners"] == 0b01
    silent = market.providers[1].provider_info(market.providers[1].address)
    assert (silent.slashed, silent.locked, silent.earned) == (0, 0, 0)


def test_an_on_chain_commit_stays_live_then_is_slashed_after_the_window(market: Market) -> None:
    job_id, t0 = seated_at(market, 1, 0, 1, 2)
    seats = market.seats(job_id)
    close = t0 + COMMIT_WINDOW + REVEAL_WINDOW
    market.providers[1].commit_on_chain(job_id, 1, market.commit_hash(job_id, seats[1], Work(BAD)))
    market.next_at(close)
    with pytest.raises(E.SettleTooEarly) as early:
        market.coordinator.settle(market.settlement(job_id, [GOOD, None, GOOD]))
    assert early.value.fields["seat"] == 1
    market.next_at(close + 1)
    with pytest.raises(E.NoMajority):  # one vote against quorum max(1, 1 vote + 1 withheld)
        market.coordinator.settle(market.settlement(job_id, [GOOD, None, None]))
    receipt = market.coordinator.settle(market.settlement(job_id, [GOOD, None, GOOD]))
    args = receipt.named("JobSettled")[0].args
    assert (args["winners"], args["slashMask"]) == (0b101, 0b010)
    assert market.requester.burned() == LOCK


def test_a_commit_only_entry_slashes_only_after_the_reveal_window(market: Market) -> None:
    job_id, t0 = seated_at(market, 2, 0, 1, 2)
    seats = market.seats(job_id)
    close = t0 + COMMIT_WINDOW + REVEAL_WINDOW
    entries = (
        market.reveal_entry(job_id, seats[0], Work(GOOD)),
        market.reveal_entry(job_id, seats[1], Work(GOOD)),
        market.commit_entry(job_id, seats[2], Work(BAD)),
    )
    settlement = Settlement(job_id, tuple(seats), entries)
    market.next_at(close)
    with pytest.raises(E.SettleTooEarly) as early:
        market.coordinator.settle(settlement)
    assert early.value.fields == {"jobId": bytes(job_id), "seat": 2}
    market.next_at(close + 1)
    receipt = market.coordinator.settle(settlement)
    args = receipt.named("JobSettled")[0].args
    assert (args["winners"], args["slashMask"]) == (0b011, 0b100)  # withheld: slashed
    assert market.providers[2].provider_info(market.providers[2].address).slashed == 1


def test_an_on_chain_reveal_cancels_the_commit_only_slash(market: Market) -> None:
    job_id, t0 = seated_at(market, 2, 0, 1, 2)
    seats = market.seats(job_id)
    opens, close = t0 + COMMIT_WINDOW, t0 + COMMIT_WINDOW + REVEAL_WINDOW
    late_work = Work(BAD)
    market.next_at(opens + 1)
    w = late_work
    market.providers[2].reveal_on_chain(job_id, 2, w.result, w.runtime_ms, w.salt)  # no vote
    entries = (
        market.reveal_entry(job_id, seats[0], Work(GOOD)),
        market.reveal_entry(job_id, seats[1], Work(GOOD)),
        market.commit_entry(job_id, seats[2], late_work),
    )
    market.next_at(close + 1)
    receipt = market.coordinator.settle(Settlement(job_id, tuple(seats), entries))
    args = receipt.named("JobSettled")[0].args
    assert (args["winners"], args["slashMask"]) == (0b011, 0)
    third = market.providers[2].provider_info(market.providers[2].address)
    assert (third.slashed, third.earned, third.locked) == (0, 0, 0)
    assert market.requester.burned() == 0


def test_spare_seats_until_reveals_open_and_the_spare_deadline(market: Market) -> None:
    now = market.now()
    job_id, t0 = seated_at(market, 2, 0, 1, spare_deadline=now + 5000, settle_deadline=now + 6000)
    jid = bytes(job_id)
    opens = t0 + COMMIT_WINDOW
    market.next_at(opens)
    market.assign(job_id, 2)  # at reveal-open: still allowed (it moves reveal-open on)
    assert market.reveal_open(job_id) == opens + COMMIT_WINDOW
    market.next_at(opens + COMMIT_WINDOW + 1)
    with pytest.raises(E.SpareDeadlinePassed) as after_open:
        market.assign(job_id, 3)
    assert after_open.value.fields == {"jobId": jid, "deadline": opens + COMMIT_WINDOW}

    now = market.now()
    short = market.create(2, assign_deadline=now + 300, spare_deadline=now + 300)
    t1 = now + 10
    market.next_at(t1)
    market.assign(short, 0, 1)
    spare = market.terms(short).spare_deadline
    assert spare < t1 + COMMIT_WINDOW
    market.next_at(spare + 1)
    with pytest.raises(E.SpareDeadlinePassed) as after_spare:
        market.assign(short, 2)
    assert after_spare.value.fields == {"jobId": bytes(short), "deadline": spare}


def test_finalize_pays_a_decided_job_and_reclaim_is_refused(market: Market) -> None:
    job_id, t0 = seated_at(market, 2, 0, 1)
    seats = market.seats(job_id)
    works = [Work(GOOD), Work(GOOD)]
    for i in (0, 1):
        market.providers[i].commit_on_chain(
            job_id, i, market.commit_hash(job_id, seats[i], works[i])
        )
    market.next_at(t0 + COMMIT_WINDOW + 1)
    for i in (0, 1):
        w = works[i]
        market.providers[i].reveal_on_chain(job_id, i, w.result, w.runtime_ms, w.salt)
    deadline = market.terms(job_id).settle_deadline
    market.next_at(deadline)
    with pytest.raises(E.FinalizeTooEarly) as early:
        market.deployer.finalize(job_id)
    assert early.value.fields == {"jobId": bytes(job_id), "deadline": deadline}
    with pytest.raises(E.ReclaimTooEarly):
        market.requester.reclaim(job_id)
    market.next_at(deadline + 1)
    with pytest.raises(E.MajorityExists):
        market.requester.reclaim(job_id)
    with pytest.raises(E.SettleDeadlinePassed):
        market.coordinator.settle(market.settlement(job_id, list(works)))
    receipt = market.deployer.finalize(job_id)  # anyone
    assert [e.name for e in receipt.events if e.name.startswith("Job")] == [
        "JobSettled",
        "JobFinalized",
    ]
    assert receipt.named("JobFinalized")[0].args == {
        "jobId": bytes(job_id),
        "caller": market.deployer.address,
    }
    pay = 100_000 * RATE // 3_600_000
    assert market.requester.claimable(market.coordinator.address) == 0  # the fee goes back
    assert market.requester.claimable(market.requester.address) == ESCROW_R2 - 2 * pay
    with pytest.raises(E.WrongStatus):
        market.requester.reclaim(job_id)


def test_reclaim_takes_back_an_undecided_job_and_finalize_is_refused(market: Market) -> None:
    job_id, t0 = seated_at(market, 2, 0, 1)
    seats = market.seats(job_id)
    w = Work(GOOD)
    market.next_at(t0 + COMMIT_WINDOW + 1)
    market.providers[0].reveal_on_chain(
        job_id, 0, w.result, w.runtime_ms, w.salt,
        receipt_signature=market.receipt_sig(job_id, 0, seats[0], w),
    )  # fmt: skip
    market.next_at(market.terms(job_id).settle_deadline + 1)
    with pytest.raises(E.NotRequester):
        market.coordinator.reclaim(job_id)
    with pytest.raises(E.NoMajority):  # one vote of two is no majority
        market.deployer.finalize(job_id)
    receipt = market.requester.reclaim(job_id)
    assert receipt.named("JobReclaimed")[0].args == {"jobId": bytes(job_id), "refund": ESCROW_R2}
    assert market.requester.claimable(market.requester.address) == ESCROW_R2
    assert market.providers[0].provider_info(market.providers[0].address).locked == 0
    assert market.requester.job_status(job_id) == (JobStatus.RECLAIMED, 2)
    with pytest.raises(E.WrongStatus):
        market.deployer.finalize(job_id)

    unassigned = market.create(2)
    deadline = market.terms(unassigned).assign_deadline
    market.next_at(deadline)
    with pytest.raises(E.ReclaimTooEarly) as early:
        market.requester.reclaim(unassigned)
    assert early.value.fields == {"jobId": bytes(unassigned), "deadline": deadline}
    market.next_at(deadline + 1)
    market.requester.reclaim(unassigned)
    assert market.requester.job_status(unassigned) == (JobStatus.RECLAIMED, 0)


def test_a_withheld_on_chain_commit_counts_in_the_quorum_after_the_deadline(
    market: Market,
) -> None:
    job_id, t0 = seated_at(market, 1, 0, 1)
    seats = market.seats(job_id)
    works = [Work(GOOD), Work(GOOD)]
    for i in (0, 1):
        market.providers[i].commit_on_chain(
            job_id, i, market.commit_hash(job_id, seats[i], works[i])
        )
    market.next_at(t0 + COMMIT_WINDOW + 1)
    w = works[0]
    market.providers[0].reveal_on_chain(job_id, 0, w.result, w.runtime_ms, w.salt)
    market.next_at(market.terms(job_id).settle_deadline + 1)
    with pytest.raises(E.NoMajority):  # 1 vote, 1 withheld: 2 * 1 > max(1, 2) fails
        market.deployer.finalize(job_id)
    market.requester.reclaim(job_id)
    assert market.requester.claimable(market.requester.address) == 3 * CAP + FEE


def test_abort_refunds_everything(market: Market) -> None:
    job_id = market.create(2)
    market.assign(job_id, 0, 1)
    with pytest.raises(E.NotCoordinator):
        market.requester.abort(job_id)
    receipt = market.coordinator.abort(job_id)
    assert receipt.named("JobAborted")[0].args == {"jobId": bytes(job_id), "refund": ESCROW_R2}
    assert market.requester.claimable(market.requester.address) == ESCROW_R2
    assert market.requester.claimable(market.coordinator.address) == 0
    for p in market.providers[:2]:
        assert p.provider_info(p.address).locked == 0
    assert market.requester.job_status(job_id) == (JobStatus.ABORTED, 2)
    with pytest.raises(E.WrongStatus) as again:
        market.coordinator.abort(job_id)
    assert again.value.fields["status"] == int(JobStatus.ABORTED)
    unassigned = market.create(2)
    market.coordinator.abort(unassigned)
    assert market.requester.claimable(market.requester.address) == 2 * ESCROW_R2


def _selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_settle_batch_skips_invalid_settlements(market: Market) -> None:
    a, b, c = (market.create(2) for _ in range(3))
    for job_id in (a, b, c):
        market.assign(job_id, 0, 1)
    valid_a = market.settlement(a, [GOOD, GOOD])
    split_b = market.settlement(b, [GOOD, BAD])
    unknown = Settlement(JobId(b"\x07" * 32), valid_a.seats, valid_a.entries)
    batch = [valid_a, split_b, unknown, valid_a, market.settlement(c, [GOOD, GOOD])]
    receipt = market.coordinator.settle_batch(batch)
    outcome = [
        (e.name, e.args["jobId"], e.args.get("reason"))
        for e in receipt.events
        if e.name in ("JobSettled", "SettlementSkipped")
    ]
    assert outcome == [
        ("JobSettled", a, None),
        ("SettlementSkipped", b, _selector("NoMajority(bytes32)")),
        ("SettlementSkipped", bytes(unknown.job_id), _selector("JobNotFound(bytes32)")),
        ("SettlementSkipped", a, _selector("WrongStatus(bytes32,uint8)")),
        ("JobSettled", c, None),
    ]
    assert market.requester.claimable(market.coordinator.address) == 2 * FEE
    assert market.requester.job_status(b) == (JobStatus.ASSIGNED, 2)
