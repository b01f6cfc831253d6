"""The same market behaviour on the in-memory fake and on the real contracts (Anvil).

Each test runs twice through the parametrized ``market`` fixture; a difference between
the fake and the contract fails one of the two runs.
"""

from __future__ import annotations

import pytest

from contracts import errors as E
from contracts.models import CompareMode, JobStatus, Settlement, SignedEntry
from protocol.ids import Wei
from tests.contracts.harness import CAP, FACTOR, FEE, FUNDS, PRICE, STAKE, UNBONDING_S, Market

GOOD = b"\x01" * 32
BAD = b"\x02" * 32

pytestmark = pytest.mark.integration


def test_clients_implement_the_protocol(market: Market) -> None:
    from contracts.chain import ChainClient

    assert isinstance(market.requester, ChainClient)
    assert market.deployment.registry == market.deployment.market


def test_job_id_and_escrow(market: Market) -> None:
    from contracts.chain import job_id_for

    before = market.requester.token_balance(market.requester.address)
    nonce = market.requester.account_info(market.requester.address).nonce
    job_id = market.create(2)
    assert job_id == job_id_for(market.requester.address, nonce)
    escrow = 3 * CAP + FEE
    assert before - market.requester.token_balance(market.requester.address) == escrow
    info = market.requester.get_job(job_id)
    assert info.status == JobStatus.OPEN and info.assigned == 0
    assert info.terms.requester == market.requester.address
    assert info.terms.coordinator == market.coordinator.address
    assert info.escrow == escrow and info.spec_cid.startswith("bafk")
    assert market.requester.job_status(job_id) == (JobStatus.OPEN, 0)


def test_agreeing_pair_is_paid_and_everyone_claims(market: Market) -> None:
    job_id = market.create(2)
    assignment = market.assignment(0, 1)
    market.coordinator.assign(job_id, assignment)
    info = market.providers[0].provider_info(market.providers[0].address)
    assert info.locked == FACTOR * PRICE
    assert market.coordinator.get_assignment(job_id) == assignment
    receipt = market.coordinator.settle(market.settlement(job_id, assignment, [GOOD, GOOD]))
    settled = receipt.named("JobSettled")
    assert len(settled) == 1 and settled[0].args["result"] == GOOD
    assert market.requester.job_status(job_id) == (JobStatus.SETTLED, 2)
    refund = 3 * CAP + FEE - 2 * PRICE - FEE
    assert market.requester.claimable(market.requester.address) == refund
    assert market.requester.claimable(market.coordinator.address) == FEE
    for p in market.providers[:2]:
        info = p.provider_info(p.address)
        assert (info.earned, info.locked, info.completed) == (PRICE, 0, 1)
        before = p.token_balance(p.address)
        p.claim()
        assert p.token_balance(p.address) - before == PRICE
        with pytest.raises(E.NothingToClaim):
            p.claim()


def test_two_against_one_pays_two_slashes_one_and_balances_add_up(market: Market) -> None:
    parties = [market.requester, market.coordinator, *market.providers[:3]]
    start = {c.address: c.token_balance(c.address) for c in parties}
    job_id = market.create(3)
    assignment = market.assignment(0, 1, 2)
    market.coordinator.assign(job_id, assignment)
    receipt = market.coordinator.settle(market.settlement(job_id, assignment, [GOOD, BAD, GOOD]))
    slashed = receipt.named("ProviderSlashed")
    assert [e.args["provider"] for e in slashed] == [market.providers[1].address]
    assert slashed[0].args["amount"] == FACTOR * PRICE
    loser = market.providers[1].provider_info(market.providers[1].address)
    assert (loser.stake, loser.slashed, loser.earned, loser.locked) == (
        STAKE - FACTOR * PRICE,
        1,
        0,
        0,
    )
    for c in parties:
        if c.claimable(c.address):
            c.claim()
    delta = {c.address: c.token_balance(c.address) - start[c.address] for c in parties}
    escrow = 4 * CAP + FEE
    assert delta[market.requester.address] == -escrow + (escrow - 2 * PRICE - FEE) + 5 * PRICE
    assert delta[market.coordinator.address] == FEE
    assert delta[market.providers[0].address] == PRICE
    assert delta[market.providers[2].address] == PRICE
    assert delta[market.providers[1].address] == 0  # its loss is inside the registry
    assert sum(delta.values()) == FACTOR * PRICE  # the slashed stake, nothing more, nothing less
    # what the market still holds is exactly the providers' remaining stake
    held = market.requester.token_balance(market.deployment.market)
    stakes = sum(p.provider_info(p.address).stake for p in market.providers)
    assert held == stakes


def test_tie_breaker_then_tolerance_winners(market: Market) -> None:
    job_id = market.create(2)
    pair = market.assignment(0, 1)
    market.coordinator.assign(job_id, pair)
    with pytest.raises(E.NoMajority):
        market.coordinator.settle(market.settlement(job_id, pair, [GOOD, BAD]))
    three = market.assignment(0, 1, 2)
    market.coordinator.assign(job_id, three)
    market.coordinator.settle(market.settlement(job_id, three, [GOOD, BAD, GOOD]))
    assert market.requester.job_status(job_id) == (JobStatus.SETTLED, 3)

    tol = market.create(2, mode=CompareMode.TOLERANCE)
    market.coordinator.assign(tol, three)
    s = market.settlement(tol, three, [GOOD, b"\x03" * 32, BAD], winners=0b011)
    market.coordinator.settle(s)
    second = market.providers[1].provider_info(market.providers[1].address)
    third = market.providers[2].provider_info(market.providers[2].address)
    assert (second.slashed, second.earned) == (1, PRICE)  # slashed in the exact job only
    assert (third.slashed, third.earned, third.stake) == (0, PRICE, STAKE)  # never slashed


def test_unrevealed_commit_is_slashed_silence_is_not(market: Market) -> None:
    job_id = market.create(2)
    three = market.assignment(0, 1, 2)
    market.coordinator.assign(job_id, three)
    entries = (
        market.reveal(0, job_id, GOOD),
        market.reveal(1, job_id, GOOD),
        market.commit_only(2, job_id, BAD),
    )
    market.coordinator.settle(Settlement(job_id, tuple(three), entries))
    assert market.providers[2].provider_info(market.providers[2].address).slashed == 1

    quiet = market.create(1)
    pair = market.assignment(0, 4)
    market.coordinator.assign(quiet, pair)
    market.coordinator.settle(market.settlement(quiet, pair, [GOOD, None]))
    silent = market.providers[4].provider_info(market.providers[4].address)
    assert (silent.slashed, silent.locked, silent.earned) == (0, 0, 0)


def test_settle_batch(market: Market) -> None:
    pair = market.assignment(0, 1)
    jobs = [market.create(2) for _ in range(3)]
    for job_id in jobs:
        market.coordinator.assign(job_id, pair)
    batch = [market.settlement(j, pair, [GOOD, GOOD]) for j in jobs]
    receipt = market.coordinator.settle_batch(batch)
    assert len(receipt.named("JobSettled")) == 3
    assert market.requester.claimable(market.coordinator.address) == 3 * FEE


def test_reclaim_after_deadline_without_coordinator(market: Market) -> None:
    job_id = market.create(2)
    pair = market.assignment(0, 1)
    market.coordinator.assign(job_id, pair)
    with pytest.raises(E.ReclaimTooEarly):
        market.requester.reclaim(job_id, pair)
    with pytest.raises(E.RecordMismatch):
        market.requester.reclaim(job_id, market.assignment(1, 0))
    market.advance(1900)
    with pytest.raises(E.SettleDeadlinePassed):
        market.coordinator.settle(market.settlement(job_id, pair, [GOOD, GOOD]))
    market.requester.reclaim(job_id, pair)
    assert market.requester.claimable(market.requester.address) == 3 * CAP + FEE
    assert market.providers[0].provider_info(market.providers[0].address).locked == 0
    with pytest.raises(E.WrongStatus):
        market.requester.reclaim(job_id, pair)

    unassigned = market.create(2)
    with pytest.raises(E.ReclaimTooEarly):
        market.requester.reclaim(unassigned, [])
    market.advance(700)
    market.requester.reclaim(unassigned, [])
    assert market.requester.job_status(unassigned)[0] == JobStatus.RECLAIMED


def test_cancel(market: Market) -> None:
    job_id = market.create(2)
    with pytest.raises(E.NotRequester):
        market.coordinator.cancel(job_id)
    market.requester.cancel(job_id)
    assert market.requester.claimable(market.requester.address) == 3 * CAP + FEE
    with pytest.raises(E.WrongStatus):
        market.requester.cancel(job_id)
    assigned = market.create(2)
    market.coordinator.assign(assigned, market.assignment(0, 1))
    with pytest.raises(E.WrongStatus):
        market.requester.cancel(assigned)


def test_create_job_reverts(market: Market) -> None:
    with pytest.raises(E.InvalidRedundancy):
        market.create(6)
    with pytest.raises(E.InvalidPriceCap):
        market.create(2, cap=0)
    now = market.requester.now()
    with pytest.raises(E.InvalidDeadlines):
        market.create(2, assign_deadline=now - 1)
    with pytest.raises(E.InvalidDeadlines):
        market.create(2, settle_deadline=now + 100)
    with pytest.raises(E.InvalidSpecCid):
        market.create(2, spec_cid="")
    with pytest.raises(E.InvalidSpecCid):
        market.create(2, spec_cid="b" * 129)
    with pytest.raises(E.InvalidCoordinator):
        market.create(2, coordinator="0x" + "00" * 20)
    poor = market.providers[4]
    with pytest.raises(E.InsufficientBalance):
        market.create(2, cap=FUNDS, client=poor)


def test_assign_reverts(market: Market) -> None:
    job_id = market.create(2)
    pair = market.assignment(0, 1)
    with pytest.raises(E.NotCoordinator):
        market.requester.assign(job_id, pair)
    with pytest.raises(E.PriceAboveCap):
        market.coordinator.assign(job_id, market.assignment(0, 1, price=CAP + 1))
    with pytest.raises(E.DuplicateProvider):
        market.coordinator.assign(job_id, market.assignment(0, 0))
    with pytest.raises(E.TooManyProviders):
        market.coordinator.assign(job_id, market.assignment(0, 1, 2, 3))
    stranger = market.assignment(0)
    stranger[0] = type(stranger[0])(market.deployer.address, Wei(PRICE))
    with pytest.raises(E.ProviderNotRegistered):
        market.coordinator.assign(job_id, stranger)
    with pytest.raises(E.JobNotFound):
        market.coordinator.assign(type(job_id)(b"\x09" * 32), pair)
    market.coordinator.assign(job_id, pair)
    with pytest.raises(E.NothingToAssign):
        market.coordinator.assign(job_id, pair)
    with pytest.raises(E.RecordMismatch):
        market.coordinator.assign(job_id, market.assignment(1, 0, 2))
    market.advance(700)
    with pytest.raises(E.AssignDeadlinePassed):
        market.coordinator.assign(job_id, market.assignment(0, 1, 2))


def test_stake_limits(market: Market) -> None:
    big = market.create(5, cap=to_big())
    with pytest.raises(E.InsufficientFreeStake):
        market.coordinator.assign(big, market.assignment(0, price=to_big()))
    p = market.providers[0]
    p.request_unbond(STAKE - to_big() // 100)  # leaves less than the minimum stake
    with pytest.raises(E.StakeBelowMinimum):
        market.coordinator.assign(big, market.assignment(0, price=1))
    with pytest.raises(E.InsufficientFreeStake):
        p.request_unbond(STAKE)
    with pytest.raises(E.AlreadyRegistered):
        p.register(0)
    with pytest.raises(E.ZeroAmount):
        p.stake(0)
    with pytest.raises(E.ProviderNotRegistered):
        market.requester.stake(10)


def test_unbonding_delay(market: Market) -> None:
    p = market.providers[0]
    with pytest.raises(E.NothingToWithdraw):
        p.withdraw()
    p.request_unbond(Wei(10))
    with pytest.raises(E.UnbondingNotReady):
        p.withdraw()
    market.advance(UNBONDING_S - 10)
    with pytest.raises(E.UnbondingNotReady):
        p.withdraw()
    market.advance(20)
    before = p.token_balance(p.address)
    p.withdraw()
    assert p.token_balance(p.address) - before == 10
    assert p.provider_info(p.address).stake == STAKE - 10


def test_operator_groups(market: Market) -> None:
    # providers 3 and 4 registered in operator group 7 (see the harness)
    assert market.providers[3].provider_info(market.providers[3].address).group == 7
    job_id = market.create(2)
    with pytest.raises(E.SameOperatorGroup):
        market.coordinator.assign(job_id, market.assignment(3, 4))
    market.coordinator.assign(job_id, market.assignment(0, 3))
    with pytest.raises(E.SameOperatorGroup):
        market.coordinator.assign(job_id, market.assignment(0, 3, 4))


def test_settle_reverts(market: Market) -> None:
    job_id = market.create(2)
    pair = market.assignment(0, 1)
    market.coordinator.assign(job_id, pair)
    good = market.settlement(job_id, pair, [GOOD, GOOD])
    with pytest.raises(E.NotCoordinator):
        market.requester.settle(good)
    forged = Settlement(job_id, good.assignment, (good.entries[0], good.entries[0]))
    with pytest.raises(E.InvalidSignature):
        market.coordinator.settle(forged)
    with pytest.raises(E.InvalidWinners):
        market.coordinator.settle(Settlement(job_id, good.assignment, good.entries, 0b11))
    with pytest.raises(E.RecordMismatch):
        cheaper = market.assignment(0, 1, price=PRICE - 1)
        market.coordinator.settle(market.settlement(job_id, cheaper, [GOOD, GOOD]))
    with pytest.raises(E.NoMajority):
        market.coordinator.settle(market.settlement(job_id, pair, [GOOD, None]))
    bad_kind = SignedEntry(kind=3, value=GOOD, salt=GOOD, signature=good.entries[0].signature)  # type: ignore[arg-type]
    with pytest.raises((E.InvalidSignatureKind, E.ValueOutOfRange)):
        market.coordinator.settle(Settlement(job_id, good.assignment, (bad_kind, good.entries[1])))
    with pytest.raises(E.BatchTooLarge):
        market.coordinator.settle_batch([good] * 65)
    market.coordinator.settle(good)
    with pytest.raises(E.WrongStatus):
        market.coordinator.settle(good)


def to_big() -> int:
    return STAKE // FACTOR + 1


def test_providers_on_chain_commit_reveal_and_finalize(market: Market) -> None:
    from contracts.eip712 import commit_hash

    salt = b"\x07" * 32
    job_id = market.create(2)
    pair = market.assignment(0, 1)
    market.coordinator.assign(job_id, pair)
    p0, p1 = market.providers[0], market.providers[1]
    with pytest.raises(E.NotCommitted):
        p0.reveal_on_chain(job_id, GOOD, salt)
    with pytest.raises(E.NotAssignedProvider):
        market.providers[2].commit_on_chain(job_id, commit_hash(GOOD, salt))
    for p in (p0, p1):
        p.commit_on_chain(job_id, commit_hash(GOOD, salt))
    with pytest.raises(E.AlreadyCommitted):
        p0.commit_on_chain(job_id, commit_hash(GOOD, salt))
    with pytest.raises(E.RevealMismatch):
        p0.reveal_on_chain(job_id, BAD, salt)
    for p in (p0, p1):
        p.reveal_on_chain(job_id, GOOD, salt)
    with pytest.raises(E.AlreadyRevealed):
        p0.reveal_on_chain(job_id, GOOD, salt)
    assert p0.on_chain_entry(job_id, 1) == (commit_hash(GOOD, salt), GOOD, True)
    with pytest.raises(E.FinalizeTooEarly):
        market.deployer.finalize(job_id)
    market.advance(1900)  # the coordinator never settles
    with pytest.raises(E.MajorityExists):
        market.requester.reclaim(job_id, pair)
    receipt = market.deployer.finalize(job_id)  # anyone
    assert [e.name for e in receipt.events if e.name.startswith("Job")] == [
        "JobSettled",
        "JobFinalized",
    ]
    assert p0.provider_info(p0.address).earned == PRICE
    assert market.requester.claimable(market.coordinator.address) == 0
    assert market.requester.claimable(market.requester.address) == 3 * CAP + FEE - 2 * PRICE


def test_settle_counts_an_on_chain_reveal_left_out(market: Market) -> None:
    from contracts.eip712 import commit_hash

    job_id = market.create(2)
    pair = market.assignment(0, 1)
    market.coordinator.assign(job_id, pair)
    market.providers[1].commit_on_chain(job_id, commit_hash(GOOD, GOOD))
    market.providers[1].reveal_on_chain(job_id, GOOD, GOOD)
    market.coordinator.settle(market.settlement(job_id, pair, [GOOD, None]))
    assert market.providers[1].provider_info(market.providers[1].address).earned == PRICE


def test_remaining_revert_paths(market: Market) -> None:
    from eth_account import Account

    with pytest.raises(E.InvalidMode):
        market.create(2, mode=2)  # type: ignore[arg-type]
    job_id = market.create(2)
    pair = market.assignment(0, 1)
    market.coordinator.assign(job_id, pair)
    market.advance(1900)
    with pytest.raises(E.LengthMismatch):
        market.requester.reclaim(job_id, pair[:1])
    with pytest.raises(E.CommitDeadlinePassed):
        market.providers[0].commit_on_chain(job_id, GOOD)
    with pytest.raises(E.StakeOverflow):
        market.providers[0].stake(2**56)
    with pytest.raises(E.NotMinter):
        market.requester.mint(Account.create().address, 1)
