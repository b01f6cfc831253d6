"""The same market behaviour on the in-memory fake and on the real contracts (Anvil): jobs,
money, consent, stake and bonds. Windows and the fallback paths are in
``test_conformance_time.py``.

Each test runs twice through the parametrized ``market`` fixture; a difference between
the fake and the contract fails one of the two runs.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils import keccak

from contracts import errors as E
from contracts.chain import job_id_for
from contracts.client import ChainClient
from contracts.models import AcceptedSeat, CompareMode, JobStatus, Settlement, SignedEntry
from protocol import eip712
from protocol.eip712 import Signature
from protocol.ids import JobId, Wei
from tests.contracts.harness import (
    BAD,
    BOND,
    CAP,
    COMMIT_WINDOW,
    COORDINATOR_UNBOND_S,
    FACTOR,
    FEE,
    FUNDS,
    GOOD,
    MIN_PRICE,
    MIN_STAKE,
    PRICE,
    RATE,
    REVEAL_WINDOW,
    STAKE,
    TIMEOUT_MS,
    UNBONDING_S,
    Market,
    Work,
)

pytestmark = pytest.mark.integration


def expected_pay(price: int, rate_per_hour: int, billed_ms: int) -> int:
    """README "Billing": min(price, ceil(ratePerHour * billed / 3_600_000))."""
    return min(price, -(-rate_per_hour * billed_ms // 3_600_000))


def stakes(m: Market) -> int:
    return sum(p.provider_info(p.address).stake for p in m.providers)


def test_clients_implement_the_protocol(market: Market) -> None:
    assert isinstance(market.requester, ChainClient)
    assert market.deployment.registry == market.deployment.market
    params = market.requester.market_params()
    assert (params.min_stake, params.stake_factor, params.min_price) == (
        MIN_STAKE,
        FACTOR,
        MIN_PRICE,
    )
    assert (params.min_coordinator_bond, params.coordinator_unbond_delay) == (
        BOND,
        COORDINATOR_UNBOND_S,
    )
    assert params.unbonding_delay == UNBONDING_S


def test_create_job_escrows_r_plus_2_caps_and_records_terms(market: Market) -> None:
    before = market.requester.token_balance(market.requester.address)
    nonce = market.requester.account_info(market.requester.address).nonce
    request = market.request(2)
    job_id, receipt = market.requester.create_job(request)
    assert job_id == job_id_for(market.requester.address, nonce)
    escrow = 4 * CAP + FEE
    assert before - market.requester.token_balance(market.requester.address) == escrow
    created = receipt.named("JobCreated")[0].args
    assert created["jobId"] == job_id and created["escrow"] == escrow
    assert (created["timeoutMs"], created["commitWindow"], created["revealWindow"]) == (
        TIMEOUT_MS,
        COMMIT_WINDOW,
        REVEAL_WINDOW,
    )
    assert created["specCid"] == request.spec_cid.encode()
    info = market.requester.get_job(job_id)
    assert info.status == JobStatus.OPEN and info.assigned == 0 and info.seats == ()
    assert info.terms.requester == market.requester.address
    assert info.terms.coordinator == market.coordinator.address
    assert info.terms.spare_deadline == request.spare_deadline
    assert info.escrow == escrow and info.spec_cid == request.spec_cid
    assert market.requester.job_status(job_id) == (JobStatus.OPEN, 0)
    assert market.requester.account_info(market.requester.address).nonce == nonce + 1


def test_happy_lifecycle_bills_time_used_and_balances_add_up(market: Market) -> None:
    parties = [market.requester, market.coordinator, *market.providers[:3]]
    start = {c.address: c.token_balance(c.address) for c in parties}
    held_before = market.held_by_market()
    job_id = market.create(2)
    rates = [1_000_000, RATE, RATE * 1000]  # the third is capped at its price
    for provider, rate in enumerate(rates):
        market.coordinator.assign(job_id, [market.offer(job_id, provider, provider, rate=rate)])
    seats = market.seats(job_id)
    assert [(s.provider, s.price, s.rate_per_hour) for s in seats] == [
        (market.providers[i].address, PRICE, rates[i]) for i in range(3)
    ]
    assert market.providers[0].provider_info(market.providers[0].address).locked == FACTOR * PRICE
    works = [Work(GOOD, 100_001), Work(GOOD, 300_000), Work(GOOD, 150_000)]
    receipt = market.coordinator.settle(market.settlement(job_id, list(works)))
    # m = 100_001 ms: billed = min(runtime, 2m, timeout)
    billed = [100_001, 200_002, 150_000]
    pays = [expected_pay(PRICE, r, b) for r, b in zip(rates, billed, strict=True)]
    assert pays == [27_779, 200_002, PRICE]
    settled = receipt.named("JobSettled")[0].args
    escrow = 4 * CAP + FEE
    refund = escrow - sum(pays) - FEE
    assert settled == {
        "jobId": job_id,
        "result": GOOD,
        "winners": 0b111,
        "slashMask": 0,
        "paidAndBilled": [p << 64 | b for p, b in zip(pays, billed, strict=True)],
        "refund": refund,
    }
    assert receipt.named("ProviderSlashed") == []
    assert market.requester.job_status(job_id) == (JobStatus.SETTLED, 3)
    assert market.requester.claimable(market.requester.address) == refund
    assert market.requester.claimable(market.coordinator.address) == FEE
    for i, p in enumerate(market.providers[:3]):
        info = p.provider_info(p.address)
        assert (info.earned, info.locked, info.completed, info.stake) == (pays[i], 0, 1, STAKE)
    market.claim_all()
    delta = {c.address: c.token_balance(c.address) - start[c.address] for c in parties}
    assert delta[market.requester.address] == -sum(pays) - FEE
    assert delta[market.coordinator.address] == FEE
    for i in range(3):
        assert delta[market.providers[i].address] == pays[i]
    assert sum(delta.values()) == 0
    assert market.held_by_market() == held_before == stakes(market) + BOND
    with pytest.raises(E.NothingToClaim):
        market.providers[0].claim()


def test_a_slash_is_burned_and_credited_to_nobody(market: Market) -> None:
    parties = [market.requester, market.coordinator, *market.providers[:3]]
    start = {c.address: c.token_balance(c.address) for c in parties}
    job_id = market.create(3)
    market.assign(job_id, 0, 1, 2)
    receipt = market.coordinator.settle(market.settlement(job_id, [GOOD, BAD, GOOD]))
    lock = FACTOR * PRICE
    slashed = receipt.named("ProviderSlashed")
    assert [(e.args["provider"], e.args["amount"]) for e in slashed] == [
        (market.providers[1].address, lock)
    ]
    settled = receipt.named("JobSettled")[0].args
    assert (settled["winners"], settled["slashMask"]) == (0b101, 0b010)
    assert settled["paidAndBilled"][1] == 0
    loser = market.providers[1].provider_info(market.providers[1].address)
    assert (loser.stake, loser.slashed, loser.earned, loser.locked) == (STAKE - lock, 1, 0, 0)
    assert market.requester.burned() == lock
    market.claim_all()
    delta = {c.address: c.token_balance(c.address) - start[c.address] for c in parties}
    paid = 2 * expected_pay(PRICE, RATE, 100_000)
    assert delta[market.requester.address] == -paid - FEE  # the slash is not the requester's
    assert sum(delta.values()) == 0
    # balance == stakes + bonds + credits + burned, with everything claimed
    assert market.held_by_market() == stakes(market) + BOND + lock


def test_consent_is_checked_and_never_stored(market: Market) -> None:
    job_id = market.create(2)
    jid = bytes(job_id)
    forged = market.offer(job_id, 0, 0, signer=1)
    with pytest.raises(E.InvalidAccept) as info:
        market.coordinator.assign(job_id, [forged])
    assert info.value.fields == {"jobId": jid, "provider": market.providers[0].address}
    with pytest.raises(E.InvalidAccept):  # signed for seat 1, offered as seat 0
        market.coordinator.assign(job_id, [market.offer(job_id, 0, 1)])
    with pytest.raises(E.InvalidAccept):  # signed for other terms
        market.coordinator.assign(job_id, [market.offer(job_id, 0, 0, terms_hash=b"\x05" * 32)])
    other = market.create(2)
    with pytest.raises(E.InvalidAccept):  # signed for another job
        market.coordinator.assign(job_id, [market.offer(other, 0, 0)])
    expiry = market.now() + 50
    late = market.offer(job_id, 0, 0, expiry=expiry)
    market.next_at(expiry + 1)
    with pytest.raises(E.OfferExpired) as expired:
        market.coordinator.assign(job_id, [late])
    assert expired.value.fields == {
        "jobId": jid,
        "provider": market.providers[0].address,
        "expiry": expiry,
    }
    just_in_time = market.offer(job_id, 0, 0, expiry=expiry + 10)
    market.next_at(expiry + 10)
    receipt = market.coordinator.assign(job_id, [just_in_time])
    assigned = receipt.named("ProviderAssigned")[0].args
    assert assigned == {
        "jobId": jid,
        "provider": market.providers[0].address,
        "seat": 0,
        "price": PRICE,
        "ratePerHour": RATE,
        "assignedAt": expiry + 10,
    }
    assert market.seats(job_id)[0].assigned_at == expiry + 10


def test_assign_refuses_bad_offers(market: Market) -> None:
    job_id = market.create(1)
    with pytest.raises(E.NotCoordinator):
        market.requester.assign(job_id, market.offers(job_id, 0))
    with pytest.raises(E.NothingToAssign):
        market.coordinator.assign(job_id, [])
    with pytest.raises(E.PriceAboveCap) as above:
        market.assign(job_id, 0, price=CAP + 1)
    assert above.value.fields == {"price": CAP + 1, "priceCap": CAP}
    with pytest.raises(E.PriceBelowMinimum) as below:
        market.assign(job_id, 0, price=MIN_PRICE - 1)
    assert below.value.fields == {"price": MIN_PRICE - 1, "minimum": MIN_PRICE}
    with pytest.raises(E.InvalidRate):
        market.assign(job_id, 0, rate=0)
    with pytest.raises(E.TooManyProviders) as too_many:
        market.assign(job_id, 0, 1, 2, 3)  # redundancy 1: at most 3 seats
    assert too_many.value.fields == {"count": 4, "max": 3}
    with pytest.raises(E.DuplicateProvider):
        market.assign(job_id, 0, 0)
    with pytest.raises(E.SameOperatorGroup) as group:
        market.assign(job_id, 3, 4)  # providers 3 and 4 share operator group 7
    assert group.value.fields == {"provider": market.providers[4].address, "group": 7}
    deployer = market.deployer.address
    expiry = market.now() + 600
    sig = eip712.sign_accept(
        market.accounts["deployer"], market.domain, job_id, deployer, 0, PRICE, RATE,
        market.terms(job_id).terms_hash(), expiry,
    )  # fmt: skip
    stranger = AcceptedSeat(deployer, PRICE, RATE, expiry, Signature.from_bytes(sig))
    with pytest.raises(E.ProviderNotRegistered):
        market.coordinator.assign(job_id, [stranger])
    with pytest.raises(E.JobNotFound):
        market.coordinator.assign(JobId(b"\x09" * 32), market.offers(job_id, 0))
    terms = market.terms(job_id)
    market.next_at(terms.assign_deadline - 300)
    market.assign(job_id, 0, 3)
    with pytest.raises(E.SameOperatorGroup):
        market.assign(job_id, 4)  # the group rule spans every seat of the job
    with pytest.raises(E.DuplicateProvider):
        market.assign(job_id, 0)
    market.next_at(terms.assign_deadline + 1)  # first seats no more, spare seats still
    market.assign(job_id, 1)
    assert market.requester.job_status(job_id) == (JobStatus.ASSIGNED, 3)
    unseated = market.create(1)
    deadline = market.terms(unseated).assign_deadline
    market.next_at(deadline + 1)
    with pytest.raises(E.AssignDeadlinePassed) as late:
        market.assign(unseated, 0)
    assert late.value.fields == {"jobId": bytes(unseated), "deadline": deadline}


def test_tie_breaker_and_tolerance_winners(market: Market) -> None:
    job_id = market.create(2)
    market.assign(job_id, 0, 1)
    with pytest.raises(E.NoMajority):
        market.coordinator.settle(market.settlement(job_id, [GOOD, BAD]))
    market.assign(job_id, 2)  # a tie-breaker
    market.coordinator.settle(market.settlement(job_id, [GOOD, BAD, GOOD]))
    assert market.providers[1].provider_info(market.providers[1].address).slashed == 1

    tol = market.create(2, mode=CompareMode.TOLERANCE)
    market.assign(tol, 0, 1, 2)
    with pytest.raises(E.InvalidWinners):  # winners must be votes
        market.coordinator.settle(market.settlement(tol, [GOOD, GOOD, BAD], winners=0b1001))
    with pytest.raises(E.InvalidWinners):
        market.coordinator.settle(market.settlement(tol, [GOOD, GOOD, BAD], winners=0))
    with pytest.raises(E.NoMajority):  # one of three votes is no majority
        market.coordinator.settle(market.settlement(tol, [GOOD, GOOD, BAD], winners=0b001))
    receipt = market.coordinator.settle(
        market.settlement(tol, [GOOD, b"\x03" * 32, BAD], winners=0b011)
    )
    args = receipt.named("JobSettled")[0].args
    assert (args["winners"], args["slashMask"], args["result"]) == (0b011, 0, GOOD)
    assert args["paidAndBilled"][2] == 0
    third = market.providers[2].provider_info(market.providers[2].address)
    assert (third.slashed, third.stake) == (0, STAKE)  # tolerance jobs never slash


def test_settle_refuses_bad_settlements(market: Market) -> None:
    job_id = market.create(2)
    market.assign(job_id, 0, 1)
    good = market.settlement(job_id, [GOOD, GOOD])
    jid = bytes(job_id)
    with pytest.raises(E.NotCoordinator):
        market.requester.settle(good)
    swapped = Settlement(job_id, good.seats, (good.entries[1], good.entries[0]))
    with pytest.raises(E.InvalidSignature) as forged:
        market.coordinator.settle(swapped)
    assert forged.value.fields == {"jobId": jid, "provider": market.providers[0].address}
    with pytest.raises(E.InvalidWinners):
        market.coordinator.settle(Settlement(job_id, good.seats, good.entries, 0b11))
    cheaper = type(good.seats[0])(
        good.seats[0].provider, Wei(PRICE - 1), good.seats[0].rate_per_hour,
        good.seats[0].assigned_at,
    )  # fmt: skip
    with pytest.raises(E.RecordMismatch):
        market.coordinator.settle(Settlement(job_id, (cheaper, good.seats[1]), good.entries))
    with pytest.raises(E.LengthMismatch):
        market.coordinator.settle(Settlement(job_id, good.seats, good.entries[:1]))
    bad_kind = SignedEntry(
        kind=3,  # type: ignore[arg-type]
        value=GOOD, salt=GOOD, signature=good.entries[0].signature,
    )  # fmt: skip
    with pytest.raises(E.InvalidSignatureKind) as kind:
        market.coordinator.settle(Settlement(job_id, good.seats, (bad_kind, good.entries[1])))
    assert kind.value.fields == {"index": 0, "kind": 3}
    with pytest.raises(E.BatchTooLarge):
        market.coordinator.settle_batch([good] * 65)
    market.coordinator.settle(good)
    with pytest.raises(E.WrongStatus) as status:
        market.coordinator.settle(good)
    assert status.value.fields == {"jobId": jid, "status": int(JobStatus.SETTLED)}
    with pytest.raises(E.JobNotFound):
        market.coordinator.settle(Settlement(JobId(b"\x07" * 32), good.seats, good.entries))


def test_cancel(market: Market) -> None:
    job_id = market.create(2)
    with pytest.raises(E.NotRequester):
        market.coordinator.cancel(job_id)
    receipt = market.requester.cancel(job_id)
    escrow = 4 * CAP + FEE
    assert receipt.named("JobCancelled")[0].args == {"jobId": job_id, "refund": escrow}
    assert market.requester.claimable(market.requester.address) == escrow
    assert market.requester.job_status(job_id) == (JobStatus.CANCELLED, 0)
    with pytest.raises(E.WrongStatus):
        market.requester.cancel(job_id)
    assigned = market.create(2)
    market.assign(assigned, 0)
    with pytest.raises(E.WrongStatus):
        market.requester.cancel(assigned)


def test_claim_pays_credit_and_earnings_in_one_transfer(market: Market) -> None:
    """A provider that also requested: its refund (market credit) and its pay (kept beside
    its stake) leave the market together, in one ``Claimed`` event, and only once."""
    p0 = market.providers[0]
    refunded = market.create(2, client=p0)
    p0.cancel(refunded)
    job_id = market.create(2)
    market.assign(job_id, 0, 1)
    market.coordinator.settle(market.settlement(job_id, [GOOD, GOOD]))
    credit = p0.account_info(p0.address).owed
    earned = p0.provider_info(p0.address).earned
    assert credit == 4 * CAP + FEE and earned == expected_pay(PRICE, RATE, 100_000)
    assert p0.claimable(p0.address) == credit + earned
    tokens, held = p0.token_balance(p0.address), market.held_by_market()
    receipt = p0.claim()
    assert [e.args for e in receipt.named("Claimed")] == [
        {"account": p0.address, "amount": credit + earned}
    ]
    assert p0.token_balance(p0.address) - tokens == credit + earned
    assert held - market.held_by_market() == credit + earned
    assert p0.claimable(p0.address) == 0
    assert p0.provider_info(p0.address).stake == STAKE  # the stake stays where it was
    with pytest.raises(E.NothingToClaim):
        p0.claim()


def test_create_job_refuses_bad_terms(market: Market) -> None:
    for redundancy in (0, 6):
        with pytest.raises(E.InvalidRedundancy):
            market.create(redundancy)
    with pytest.raises(E.InvalidMode):
        market.create(2, mode=2)
    for cap in (MIN_PRICE - 1, 2**56 // FACTOR + 1):
        with pytest.raises(E.InvalidPriceCap):
            market.create(2, cap=cap)
    with pytest.raises(E.CoordinatorNotBonded) as unbonded:
        market.create(2, coordinator=market.providers[0].address)
    assert unbonded.value.fields == {"coordinator": market.providers[0].address}
    for cid in ("", "b" * 129):
        with pytest.raises(E.InvalidSpecCid):
            market.create(2, spec_cid=cid)
    for timeout in (0, COMMIT_WINDOW * 1000 + 1):
        with pytest.raises(E.InvalidTimeout):
            market.create(2, timeout_ms=timeout)
    now = market.now()
    base = market.request(2)
    bad_deadlines: list[dict[str, Any]] = [
        {"assign_deadline": now - 1},
        {"spare_deadline": base.assign_deadline - 1},
        {"reveal_window": 0},
        {"settle_deadline": base.spare_deadline + COMMIT_WINDOW + REVEAL_WINDOW - 1},
        {"settle_deadline": now + 91 * 24 * 3600},
    ]
    for bad in bad_deadlines:
        with pytest.raises(E.InvalidDeadlines):
            market.create(2, **bad)
    market.create(2, settle_deadline=base.spare_deadline + COMMIT_WINDOW + REVEAL_WINDOW)
    with pytest.raises(E.InsufficientBalance):
        market.create(2, cap=FUNDS, client=market.providers[4])


def test_stake_limits(market: Market) -> None:
    lock_more_than_free = STAKE // FACTOR + 1
    big = market.create(5, cap=lock_more_than_free)
    with pytest.raises(E.InsufficientFreeStake) as free:
        market.coordinator.assign(big, [market.offer(big, 0, 0, price=lock_more_than_free)])
    assert free.value.fields == {
        "provider": market.providers[0].address,
        "free": STAKE,
        "needed": FACTOR * lock_more_than_free,
    }
    p = market.providers[0]
    p.request_unbond(STAKE - MIN_STAKE + 1)  # leaves less than the minimum stake
    with pytest.raises(E.StakeBelowMinimum):
        market.assign(big, 0)
    with pytest.raises(E.InsufficientFreeStake):
        p.request_unbond(STAKE)
    with pytest.raises(E.AlreadyRegistered):
        p.register(0)
    with pytest.raises(E.ZeroAmount):
        p.stake(0)
    with pytest.raises(E.ZeroAmount):
        p.request_unbond(0)
    with pytest.raises(E.ProviderNotRegistered):
        market.requester.stake(10)
    with pytest.raises(E.StakeOverflow):
        p.stake(2**56)
    with pytest.raises(E.NotMinter):
        market.requester.mint(market.requester.address, 1)


def test_locked_stake_cannot_unbond_until_released(market: Market) -> None:
    p = market.providers[0]
    job_id = market.create(2)
    market.assign(job_id, 0, 1)
    info = p.provider_info(p.address)
    assert (info.locked, info.free) == (FACTOR * PRICE, STAKE - FACTOR * PRICE)
    with pytest.raises(E.InsufficientFreeStake):
        p.request_unbond(STAKE)
    market.coordinator.settle(market.settlement(job_id, [GOOD, GOOD]))
    p.request_unbond(STAKE)
    assert p.provider_info(p.address).unbonding == STAKE


def test_unbonding_delay(market: Market) -> None:
    p = market.providers[0]
    with pytest.raises(E.NothingToWithdraw):
        p.withdraw()
    receipt = p.request_unbond(Wei(10))
    ready_at = receipt.named("UnbondRequested")[0].args["readyAt"]
    assert p.provider_info(p.address).unbond_ready_at == ready_at
    market.next_at(ready_at - 1)
    with pytest.raises(E.UnbondingNotReady) as early:
        p.withdraw()
    assert early.value.fields == {"provider": p.address, "readyAt": ready_at}
    market.next_at(ready_at)
    before = p.token_balance(p.address)
    p.withdraw()
    assert p.token_balance(p.address) - before == 10
    assert p.provider_info(p.address).stake == STAKE - 10


def test_coordinator_bond_and_unbond(market: Market) -> None:
    c = market.coordinator
    assert c.coordinator_info(c.address).bond == BOND
    with pytest.raises(E.ZeroAmount):
        c.bond_coordinator(0)
    with pytest.raises(E.InsufficientBond) as too_much:
        c.request_coordinator_unbond(BOND + 1)
    assert too_much.value.fields == {"coordinator": c.address, "bond": BOND, "amount": BOND + 1}
    with pytest.raises(E.NothingToWithdraw):
        c.withdraw_coordinator_bond()
    job_id = market.create(2)  # bonded: jobs may name it
    receipt = c.request_coordinator_unbond(1)
    args = receipt.named("CoordinatorUnbondRequested")[0].args
    ready_at = args["readyAt"]
    assert (args["amount"], args["unbonding"]) == (1, 1)
    info = c.coordinator_info(c.address)
    assert (info.bond, info.unbonding, info.unbond_ready_at) == (BOND - 1, 1, ready_at)
    with pytest.raises(E.CoordinatorNotBonded):  # below the minimum bond now
        market.create(2)
    market.assign(job_id, 0, 1)  # jobs that already name it go on
    market.coordinator.settle(market.settlement(job_id, [GOOD, GOOD]))
    market.next_at(ready_at - 1)
    with pytest.raises(E.UnbondingNotReady):
        c.withdraw_coordinator_bond()
    before = c.token_balance(c.address)
    market.next_at(ready_at)
    withdrawn = c.withdraw_coordinator_bond()
    assert withdrawn.named("CoordinatorWithdrawn")[0].args == {
        "coordinator": c.address,
        "amount": 1,
    }
    assert c.token_balance(c.address) - before == 1
    c.bond_coordinator(1)
    assert c.coordinator_info(c.address).bond == BOND
    market.create(2)


def test_constructor_refuses_bad_parameters(market: Market) -> None:
    with pytest.raises(E.InvalidConstructorArgument) as info:
        market.deploy_market(coordinator_unbond_delay=90 * 24 * 3600)
    assert info.value.fields == {"name": "coordinatorUnbondDelay"}
    for name, kw in (
        ("minStake", {"min_stake": 0}),
        ("stakeFactor", {"stake_factor": 0}),
        ("minPrice", {"min_price": 0}),
        ("minCoordinatorBond", {"min_coordinator_bond": 0}),
    ):
        with pytest.raises(E.InvalidConstructorArgument) as info:
            market.deploy_market(**kw)
        assert info.value.fields == {"name": name}


def test_job_id_is_keccak_of_requester_and_nonce() -> None:
    requester = "0x" + "ab" * 20
    expected = keccak(bytes(12) + bytes.fromhex("ab" * 20) + (7).to_bytes(32, "big"))
    assert job_id_for(requester, 7) == expected
