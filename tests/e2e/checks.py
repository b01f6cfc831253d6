"""Assertions shared by the end-to-end tests: money moved exactly as the contract says."""

from __future__ import annotations

from typing import Any

from protocol.ids import to_wei
from tests.e2e.market import Ledger, Market


def assert_paid_exactly(
    market: Market,
    job: dict[str, Any],
    before: Ledger,
    after: Ledger,
    *,
    escrow: str,
    slashed: dict[str, int] | None = None,
) -> None:
    """The requester paid ``escrow``; each paid provider got its price, the coordinator its
    fee, slashed stake went to the requester, the requester got the rest; nothing else moved.
    """
    job_id = job["job_id"]
    slashed = slashed or {}
    requester, coordinator = job["requester"], market.coordinator_address
    created = market.job_events(job_id, "JobCreated")
    settled = market.job_events(job_id, "JobSettled")
    assert len(created) == 1 and len(settled) == 1, (created, settled)
    fee = int(created[0].args["fee"])
    paid = {p["address"]: int(p["price"]) for p in job["providers"] if p["outcome"] == "paid"}
    assert paid, f"nobody was paid for {job_id}: {job['providers']}"
    assigned = {
        e.args["provider"]: int(e.args["price"])
        for e in market.job_events(job_id, "ProviderAssigned")
    }
    for address, price in paid.items():
        assert assigned[address] == price, "the coordinator reports another price than the chain"
    escrow_wei = to_wei(escrow)
    assert int(created[0].args["escrow"]) == escrow_wei
    refund = escrow_wei - sum(paid.values()) - fee + sum(slashed.values())
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
    # Conservation: everything escrowed is now credited inside the market, nothing leaked.
    credited = (
        (after.owed[requester] - before.owed[requester])
        + (after.owed[coordinator] - before.owed[coordinator])
        + sum(after.earned[a] - before.earned[a] for a in paid)
    )
    assert credited == escrow_wei + sum(slashed.values())
    assert after.market_tokens - before.market_tokens == escrow_wei
