"""A scenario on the in-memory market that calls every contract function once or more."""

from __future__ import annotations

from contracts.models import ChainEvent
from devnet.anvil import dev_accounts
from tests.contracts.harness import (
    BAD,
    COMMIT_WINDOW,
    COORDINATOR_UNBOND_S,
    GOOD,
    UNBONDING_S,
    Work,
    fake_market,
)


def run_every_function() -> list[ChainEvent]:
    """Runs jobs down every path (settle with a slash, settleBatch with a skip, on-chain
    commit and reveal, finalize, reclaim, cancel, abort), claims, and unbonds; returns
    every event emitted, setup included."""
    m = fake_market([a.private_key for a in dev_accounts()])
    assert m.world is not None
    m.requester.approve(m.deployment.market, 1)

    slashed = m.create(3)
    m.assign(slashed, 0, 1, 2)
    split = m.create(2)
    m.assign(split, 0, 1)
    m.coordinator.settle_batch(
        [m.settlement(slashed, [GOOD, BAD, GOOD]), m.settlement(split, [GOOD, BAD])]
    )

    finalized = m.create(2)
    m.assign(finalized, 0, 1)
    seats = m.seats(finalized)
    works = [Work(GOOD), Work(GOOD)]
    for i in (0, 1):
        m.providers[i].commit_on_chain(finalized, i, m.commit_hash(finalized, seats[i], works[i]))
    m.advance(COMMIT_WINDOW + 1)
    for i in (0, 1):
        w = works[i]
        m.providers[i].reveal_on_chain(finalized, i, w.result, w.runtime_ms, w.salt)
    m.advance(m.terms(finalized).settle_deadline - m.now())
    m.deployer.finalize(finalized)

    m.coordinator.abort(split)
    m.requester.cancel(m.create(2))
    unassigned = m.create(2)
    m.advance(m.terms(unassigned).assign_deadline - m.now())
    m.requester.reclaim(unassigned)
    m.claim_all()

    m.providers[0].request_unbond(1)
    m.coordinator.request_coordinator_unbond(1)
    m.advance(max(UNBONDING_S, COORDINATOR_UNBOND_S))
    m.providers[0].withdraw()
    m.coordinator.withdraw_coordinator_bond()
    return list(m.world.events)
