"""Every disagreement is decided and has consequences: a spot-checked cheater, a withheld
reveal, a reveal posted only on chain, spot checks of established providers at the policy's
rate, and exact balances for each outcome."""

from __future__ import annotations

from pathlib import Path

import trio

from coordinator.store import JobRecord, ProviderSlot, ReputationRecord
from devnet.harness import COMMIT_WINDOW, STAKE, Harness, harness
from protocol.ids import JobId
from protocol.lifecycle import JobState, Outcome, SeatState

S = JobState
RATES = [10**6, 2 * 10**6, 3 * 10**6]


def settled(job: JobRecord) -> bool:
    return job.state is S.SETTLED


def key(job_id: str) -> JobId:
    return JobId(bytes.fromhex(job_id[2:]))


def assert_exact_balances(h: Harness, job: JobRecord, slots: list[ProviderSlot]) -> None:
    """Winners hold exactly their pay, losers lost exactly their burned lock, the requester
    got the rest of the escrow back and the coordinator its fee: nothing else moved."""
    chain = h.chain(h.requester)
    escrow = chain.get_job(key(job.job_id)).escrow
    pays = sum(s.pay or 0 for s in slots)
    assert job.refund is not None and escrow == pays + job.fee + job.refund
    assert chain.claimable(h.requester.address) == job.refund
    assert chain.claimable(h.coordinator.address) == job.fee
    for s in slots:
        info = chain.provider_info(s.address)
        assert chain.claimable(s.address) == (s.pay or 0), s.address
        assert info.stake == STAKE - (s.slashed or 0), s.address
        assert (s.outcome is Outcome.SLASHED) == bool(s.slashed) == (info.slashed == 1)


async def test_a_spot_checked_cheater_is_slashed_and_the_honest_result_paid(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, 3, rates=RATES, groups=[1, 2, 3]) as h:
        cheat, checker, tie = h.providers
        cheat.result = b"garbage"
        job_id = await h.create_job(1)
        job = await h.run(job_id, settled, advance=30, steps=200)
        slots = await h.slots(job_id)
        assert [s.address for s in slots] == [cheat.address, checker.address, tie.address]
        assert [s.outcome for s in slots] == [Outcome.SLASHED, Outcome.PAID, Outcome.PAID]
        assert job.checker == checker.address and job.spot_checked
        assert job.result_cid == checker.result_cid()
        assert_exact_balances(h, job, slots)


async def test_a_checked_primary_that_withholds_its_reveal_is_slashed(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, rates=RATES, groups=[1, 2, 3]) as h:
        cheat, checker, tie = h.providers
        cheat.withhold = True
        job_id = await h.create_job(1)
        job = await h.run(job_id, settled, advance=30, steps=200)
        slots = await h.slots(job_id)
        assert [s.address for s in slots] == [cheat.address, checker.address, tie.address]
        assert [s.outcome for s in slots] == [Outcome.SLASHED, Outcome.PAID, Outcome.PAID]
        assert slots[0].state is SeatState.FAILED and slots[0].slashed == 5 * slots[0].price
        reasons = [e.detail.get("reason") for e in await h.store.events(job_id)]
        assert "seats [0] withheld their reveals" in reasons
        # The settlement waited for the reveal window to close: only then is it slashable.
        terms = job.terms()
        assert h.world.time > terms.reveal_close([s.seat() for s in slots])
        assert job.result_cid == checker.result_cid()
        assert_exact_balances(h, job, slots)


async def test_a_withheld_reveal_without_a_tie_breaker_loses_its_pay_not_the_job(
    tmp_path: Path,
) -> None:
    """Two votes are needed to outvote a withheld commitment; with no third provider the
    checker's vote alone decides once the window closes and the withholder is unpaid."""
    async with harness(tmp_path, 2, rates=RATES[:2], groups=[1, 2]) as h:
        cheat = h.providers[0]
        cheat.withhold = True
        job_id = await h.create_job(1)
        job = await h.run(job_id, settled, advance=30, steps=200)
        slots = await h.slots(job_id)
        assert [s.outcome for s in slots] == [Outcome.RELEASED, Outcome.PAID]
        states = [e.state for e in await h.store.events(job_id)]
        assert S.DISPUTED in states and states[-2:] == [S.REVEALING, S.SETTLED]
        assert_exact_balances(h, job, slots)


async def test_a_checked_primary_revealing_only_on_chain_is_counted_and_paid(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, 3, rates=RATES, groups=[1, 2, 3]) as h:
        shy = h.providers[0]
        shy.withhold = True  # answers no reveal request: it will reveal on chain instead
        job_id = await h.create_job(1)
        await h.run(job_id, lambda j: len(h.world.jobs[key(j.job_id)].seats) == 3, steps=200)
        await h.run(job_id, lambda j: j.state is S.REVEALING, steps=200)
        seats = h.chain(h.coordinator).get_seats(key(job_id))
        opens = max(s.assigned_at for s in seats) + COMMIT_WINDOW
        h.world.advance(opens - h.world.time + 1)
        reveal = shy.reveal(key(job_id))
        h.chain(shy.identity).reveal_on_chain(
            key(job_id),
            0,
            shy.digest(),
            reveal.runtime_ms,
            reveal.salt,
            receipt_signature=shy.receipts[key(job_id)].signature,
        )
        job = await h.run(job_id, settled, advance=30, steps=200)
        slots = await h.slots(job_id)
        assert slots[0].onchain_votes
        assert [s.outcome for s in slots] == [Outcome.PAID] * 3
        assert_exact_balances(h, job, slots)


async def test_established_providers_are_spot_checked_at_the_policys_rate(
    tmp_path: Path,
) -> None:
    jobs = 120
    async with harness(tmp_path, 4, groups=[1, 2, 3, 4]) as h:
        reputation = h.driver.closer.reputation
        now = h.book.clock()
        for p in h.providers:
            reputation.load([ReputationRecord(p.address, 80.0, 1.0, now)])
            h.book.set_reputation(p.address, reputation.lower_bound(p.address), False)
            assert not reputation.newcomer(p.address)
        checked = 0
        for _ in range(jobs):
            job_id = await h.create_job(1)
            job = await h.run(job_id, settled, steps=200)
            slots = await h.slots(job_id)
            assert job.spot_checked is not None and job.spot_check_p is not None
            rate = job.spot_check_p
            if job.spot_checked:
                checked += 1
                assert [s.outcome for s in slots] == [Outcome.PAID, Outcome.PAID]
                assert slots[1].address == job.checker
            else:
                assert len(slots) == 1 and job.checker is None
        # 1.2 x the break-even 1/6 at the default stake: p = 0.2 (above the 0.168 floor).
        assert abs(rate - 0.2) < 1e-9
        # A seeded draw: 120 jobs at p = 0.2 check 24 on average (sd 4.4).
        assert 12 <= checked <= 36, checked
        # Only checked jobs verified anyone: an unchecked primary's pay is no evidence.
        records = [await h.store.reputation(p.address) for p in h.providers]
        assert sum(r.successes for r in records if r is not None) == 2 * checked


async def test_a_drawn_check_waits_for_a_checker_to_free_up(tmp_path: Path) -> None:
    async with harness(tmp_path, 2, rates=RATES[:2], groups=[1, 2]) as h:
        checker = h.providers[1]
        job_id = await h.create_job(1)
        await h.run(job_id, lambda j: j.state in (S.ASSIGNED, S.RUNNING))
        # The only possible checker has no free stake for a while.
        h.book.set_chain_facts(checker.address, registered=True, free_stake=0, group=2)
        job = await h.run(job_id, lambda j: j.spot_checked is True and j.waiting is not None)
        assert job.checker is None and "not enough free stake" in (job.waiting or "")
        for _ in range(3):
            await h.step(job_id)
        assert (await h.job(job_id)).state in (S.ASSIGNED, S.RUNNING)  # not settled unchecked
        h.book.set_chain_facts(checker.address, registered=True, free_stake=STAKE, group=2)
        job = await h.run(job_id, settled)
        assert job.checker == checker.address and job.waiting is None
        assert [s.outcome for s in await h.slots(job_id)] == [Outcome.PAID, Outcome.PAID]


async def test_the_slash_is_recorded_from_the_settlement_receipt(tmp_path: Path) -> None:
    """The burned amount is stored with the settlement itself, not only once the chain
    watcher reads ``ProviderSlashed`` (a `--wait` view right after settling shows it)."""
    async with harness(tmp_path, 3, rates=RATES, groups=[1, 2, 3]) as h:
        h.providers[0].result = b"garbage"
        job_id = await h.create_job(1)
        for _ in range(200):  # the driver alone: no chain watcher polls from here on
            if (await h.job(job_id)).state is S.SETTLED:
                break
            await h.driver.step(job_id)
            await trio.sleep(0.01)
            h.world.advance(30)
        slots = await h.slots(job_id)
        assert [s.outcome for s in slots] == [Outcome.SLASHED, Outcome.PAID, Outcome.PAID]
        assert slots[0].slashed == 5 * slots[0].price
