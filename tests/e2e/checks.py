"""Assertions shared by the end-to-end tests: money moved exactly as the contract says."""

from __future__ import annotations

from typing import Any

from contracts.models import MS_PER_HOUR
from protocol.ids import to_wei
from tests.e2e.market import Ledger, Market


def billed_pay(price: int, rate_per_hour: int, billed_ms: int) -> int:
    """The contract's billing rule for one winner: ``min(price, ceil(rate * billed / 3.6e6))``."""
    return min(price, -(-rate_per_hour * billed_ms // MS_PER_HOUR))


def assert_paid_exactly(
    market: Market,
    job: dict[str, Any],
    before: Ledger,
    after: Ledger,
    *,
    escrow: str,
    slashed: dict[str, int] | None = None,
) -> None:
    """The requester paid ``escrow``; each paid provider got what its billed runtime costs at
    its rate (never above its price), the coordinator its fee, slashed stake was burned (it
    went to nobody), the requester got the rest; nothing else moved."""
    job_id = job["job_id"]
    slashed = slashed or {}
    requester, coordinator = job["requester"], market.coordinator_address
    created = market.job_events(job_id, "JobCreated")
    settled = market.job_events(job_id, "JobSettled")
    assert len(created) == 1 and len(settled) == 1, (created, settled)
    fee = int(created[0].args["fee"])
    seats = {e.args["provider"]: e.args for e in market.job_events(job_id, "ProviderAssigned")}
    paid: dict[str, int] = {}
    for seat, word in enumerate(settled[0].args["paidAndBilled"]):
        if not word:
            continue
        pay, billed = word >> 64, word & (2**64 - 1)
        address = next(a for a, s in seats.items() if s["seat"] == seat)
        assert pay == billed_pay(seats[address]["price"], seats[address]["ratePerHour"], billed)
        paid[address] = pay
    reported = {p["address"] for p in job["providers"] if p["outcome"] == "paid"}
    assert paid and set(paid) == reported, f"paid on chain {paid}, reported {reported}"
    for p in job["providers"]:
        if p["address"] in paid and p.get("pay") is not None:
            assert int(p["pay"]) == paid[p["address"]], "the coordinator reports another pay"
    escrow_wei = to_wei(escrow)
    assert int(created[0].args["escrow"]) == escrow_wei
    refund = escrow_wei - sum(paid.values()) - fee
    assert int(settled[0].args["refund"]) == refund

    assert before.tokens[requester] - after.tokens[requester] == escrow_wei
    assert after.owed[requester] - before.owed[requester] == refund
    assert after.owed[coordinator] - before.owed[coordinator] == fee
    for address in before.earned:
        if address in (requester, coordinator):
            continue
        gained = after.earned[address] - before.earned[address]
        assert gained == paid.get(address, 0), f"{address} earned {gained}"
        lost = before.stake[address] - after.stake[address]
        assert lost == slashed.get(address, 0), f"{address} lost {lost} stake"
    burned = market.chain().burned()
    assert burned - before.burned == sum(slashed.values()), "slashed stake must be burned"
    # Conservation: everything escrowed is now credited inside the market, nothing leaked.
    credited = (
        (after.owed[requester] - before.owed[requester])
        + (after.owed[coordinator] - before.owed[coordinator])
        + sum(after.earned[a] - before.earned[a] for a in paid)
    )
    assert credited == escrow_wei
    assert after.market_tokens - before.market_tokens == escrow_wei
