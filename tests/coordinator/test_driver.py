"""The driver end to end over the in-memory chain: consent, assignment, commitments with
receipts, reveals with runtimes, verdicts that never revert, billing, spares and aborts."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import RpcError
from contracts.models import AcceptedSeat, JobStatus, Receipt
from coordinator.chain.settlement import SettleResult
from coordinator.lifecycle import closing
from coordinator.store import JobRecord
from devnet.harness import SPEC, harness
from protocol.ids import JobId
from protocol.ipfs.retention import PinRetention
from protocol.lifecycle import JobState, Outcome, SeatState
from protocol.messages import FailureKind
from protocol.spec_io import canonical_spec, parse_spec

S = JobState
P = SeatState


def settled(job: JobRecord) -> bool:
    return job.state is S.SETTLED


async def test_agreement_settles_and_shows_the_chains_billing(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, runtime_ms=90_000) as h:
        job_id = await h.create_job(2)
        job = await h.run(job_id, settled)
        slots = await h.slots(job_id)
        assert [s.state for s in slots] == [P.REVEALED, P.REVEALED]
        assert all(s.outcome is Outcome.PAID for s in slots)
        # 90 s at 1 token per hour: 0.025 token, billed 90 s each, as JobSettled says.
        assert [(s.billed_ms, s.pay) for s in slots] == [(90_000, 25_000), (90_000, 25_000)]
        assert all(s.receipt_sig and s.rate_per_hour == 1_000_000 for s in slots)
        assert job.refund is not None and job.settle_tx is not None
        status, seats = h.chain(h.requester).job_status(bytes.fromhex(job_id[2:]))  # type: ignore[arg-type]
        assert status is JobStatus.SETTLED and seats == 2


async def test_a_declined_seat_goes_to_another_provider(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, rates=[10**6, 2 * 10**6, 3 * 10**6]) as h:
        h.providers[0].decline = "my policy forbids this coordinator"
        job_id = await h.create_job(2)
        await h.run(job_id, settled)
        slots = await h.slots(job_id)
        assert [s.address for s in slots] == [h.providers[2].address, h.providers[1].address]
        declines = await h.store.declines(job_id)
        assert [(d.seat, d.address) for d in declines] == [(0, h.providers[0].address)]
        assert "my policy forbids" in declines[0].reason
        offer = h.providers[1].offers[0]
        assert (offer.seat, offer.price, offer.rate_per_hour) == (1, 333_333, 2 * 10**6)
        assert offer.expiry > h.world.time


async def test_an_accept_signed_by_someone_else_is_refused(tmp_path: Path) -> None:
    async with harness(tmp_path, 3, rates=[10**6, 2 * 10**6, 3 * 10**6]) as h:
        h.providers[1].forge_accept = True
        job_id = await h.create_job(2)
        await h.run(job_id, settled)
        assert h.providers[1].address not in [s.address for s in await h.slots(job_id)]
        (declined,) = await h.store.declines(job_id)
        assert declined.address == h.providers[1].address
        assert declined.reason.startswith("invalid accept: signature")


async def test_a_busy_provider_keeps_its_seat_and_is_asked_again_once_free(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, 2) as h:
        busy = h.providers[1]
        busy.busy = True
        job_id = await h.create_job(2)
        for _ in range(3):
            await h.step(job_id)
        slots = await h.slots(job_id)
        waiting = next(s for s in slots if s.address == busy.address)
        assert waiting.state is P.OFFERED and waiting.busy
        assert (await h.job(job_id)).state is S.MATCHING
        assert len(busy.offers) == 1  # not asked again before a slot there looks free
        busy.busy = False
        h.book.accept(busy.advert(("/ip4/127.0.0.1/tcp/4001",)))  # it advertises again
        await h.run(job_id, settled)
        assert len(busy.offers) == 2
        assert not await h.store.declines(job_id)


async def test_a_job_still_waiting_for_a_busy_provider_at_its_deadline_says_so(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, 2) as h:
        h.providers[1].busy = True
        job_id = await h.create_job(2)
        for _ in range(3):
            await h.step(job_id)
        h.world.advance(400)  # past the assign deadline, the provider still busy
        job = await h.run(job_id, lambda j: j.state is S.FAILED)
        reason = job.failure_reason or ""
        assert reason.startswith("providers still busy at the assign deadline"), reason
        assert h.providers[1].address in reason
        assert not await h.store.declines(job_id)


async def test_a_split_under_redundancy_one_seats_a_tie_breaker_and_slashes_the_loser(
    tmp_path: Path,
) -> None:
    rates = [10**6, 2 * 10**6, 3 * 10**6]
    async with harness(tmp_path, 3, rates=rates, groups=[1, 2, 3]) as h:
        cheat, checker, tie = h.providers
        cheat.result, checker.result, tie.result = b"wrong", b"right", b"right"
        cheat.runtime_ms, checker.runtime_ms, tie.runtime_ms = 1_000, 40_000, 100_000
        job_id = await h.create_job(1)
        job = await h.run(job_id, settled)
        slots = await h.slots(job_id)
        assert [s.address for s in slots] == [cheat.address, checker.address, tie.address]
        assert [s.outcome for s in slots] == [Outcome.SLASHED, Outcome.PAID, Outcome.PAID]
        events = [e.detail for e in await h.store.events(job_id)]
        assert any("tie_breaker" in d for d in events) and any("spot_check" in d for d in events)
        # Billed: min(runtime, 2 x the smallest winning runtime) = 40 s and 80 s.
        assert [(s.billed_ms, s.pay) for s in slots[1:]] == [(40_000, 22_223), (80_000, 66_667)]
        assert slots[0].slashed == 5 * slots[0].price and slots[0].pay is None
        assert job.result_cid == checker.result_cid()
        info = h.chain(h.coordinator).provider_info(cheat.address)
        assert info.slashed == 1 and info.stake == 100 * 10**6 - slots[0].slashed


async def test_a_job_nobody_takes_is_aborted_and_refunded_at_once(tmp_path: Path) -> None:
    async with harness(tmp_path, 2, decline="not today") as h:
        job_id = await h.create_job(2)
        for _ in range(3):
            await h.step(job_id)
        assert len(await h.store.declines(job_id)) == 2
        h.world.advance(400)  # past the assign deadline
        job = await h.run(job_id, lambda j: j.state is S.FAILED and j.abort_tx is not None)
        assert "not today" in (job.failure_reason or "")
        key = bytes.fromhex(job_id[2:])
        status, _ = h.chain(h.requester).job_status(key)  # type: ignore[arg-type]
        assert status is JobStatus.ABORTED
        escrow = h.chain(h.requester).get_job(key).escrow  # type: ignore[arg-type]
        assert job.refund == escrow == h.chain(h.requester).claimable(h.requester.address)
        assert await h.driver.step(job_id)  # nothing more to do; no second abort
        assert [e.state for e in await h.store.events(job_id)][-2:] == [S.FAILED, S.FAILED]


async def test_every_provider_failing_aborts_the_job(tmp_path: Path) -> None:
    async with harness(tmp_path, 2, fail_with=(FailureKind.SANDBOX_ERROR, "no GPU")) as h:
        job_id = await h.create_job(2)
        job = await h.run(job_id, lambda j: j.abort_tx is not None)
        assert job.state is S.FAILED and "no GPU" in (job.failure_reason or "")


async def test_an_early_settlement_waits_for_a_seat_still_inside_its_window(
    tmp_path: Path,
) -> None:
    rates = [10**6, 2 * 10**6, 3 * 10**6]
    async with harness(tmp_path, 3, rates=rates) as h:
        h.providers[0].fail_with = (FailureKind.SANDBOX_ERROR, "disk full")
        job_id = await h.create_job(2)
        job = await h.run(job_id, lambda j: j.state is S.REVEALING)
        for _ in range(3):  # seat 0 failed but may still commit until its deadline
            await h.step(job_id)
        assert (await h.job(job_id)).state is S.REVEALING
        slots = await h.slots(job_id)
        assert [s.state for s in slots] == [P.REPLACED, P.REVEALED, P.REVEALED]
        deadline = slots[0].assigned_at + job.commit_window  # type: ignore[operator]
        h.world.advance(deadline - h.world.time + 1)
        await h.run(job_id, settled)
        outcomes = [s.outcome for s in await h.slots(job_id)]
        assert outcomes == [Outcome.RELEASED, Outcome.PAID, Outcome.PAID]


async def test_a_reveal_posted_on_chain_with_its_receipt_counts_as_a_vote(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, 2) as h:
        job_id = await h.create_job(2)
        await h.run(job_id, lambda j: j.state is S.COMMITTED)
        shy = h.provider((await h.slots(job_id))[1].address)
        shy.withhold = True  # it answers no reveal request
        await h.run(job_id, lambda j: j.state is S.REVEALING)
        slot = (await h.slots(job_id))[1]
        assert slot.state is P.FAILED and slot.reveal_attempts == 3
        key = bytes.fromhex(job_id[2:])
        receipt = shy.receipts[key]
        seats = h.chain(h.coordinator).get_seats(key)  # type: ignore[arg-type]
        opens = max(s.assigned_at for s in seats) + 600
        h.world.advance(opens - h.world.time + 1)  # the reveal window opens
        reveal = shy.reveal(key)  # type: ignore[arg-type]
        h.chain(shy.identity).reveal_on_chain(
            key,  # type: ignore[arg-type]
            1,
            shy.digest(),
            reveal.runtime_ms,
            reveal.salt,
            receipt_signature=receipt.signature,
        )
        await h.run(job_id, settled)
        slots = await h.slots(job_id)
        assert slots[1].onchain_votes and [s.outcome for s in slots] == [Outcome.PAID] * 2


async def test_a_replacement_that_declines_is_sought_again(tmp_path: Path) -> None:
    rates = [10**6, 2 * 10**6, 3 * 10**6, 4 * 10**6]
    async with harness(tmp_path, 4, rates=rates) as h:
        first, second, refuser, spare = h.providers
        first.fail_with = (FailureKind.SANDBOX_ERROR, "disk full")
        refuser.decline = "too long a lock"
        job_id = await h.create_job(2)
        await h.run(job_id, lambda j: j.state is S.REVEALING)
        slots = await h.slots(job_id)
        assert [(s.address, s.state) for s in slots] == [
            (first.address, P.REPLACED),
            (second.address, P.REVEALED),
            (spare.address, P.REVEALED),
        ]
        assert slots[2].replaces == 0 and first.cancels
        (declined,) = await h.store.declines(job_id)
        assert (declined.seat, declined.address) == (2, refuser.address)


@pytest.mark.parametrize("sent", [False, True])
async def test_a_lost_assign_is_resent_with_the_stored_consent_or_adopted(
    tmp_path: Path, sent: bool
) -> None:
    """The accepted offers are persisted before the assign transaction: after a failure
    before sending they are sent again as they are, after a lost receipt they are adopted."""
    async with harness(tmp_path, 2) as h:
        chain = h.driver.chain
        real = chain.assign
        calls: list[int] = []

        async def flaky(job_id: JobId, offers: list[AcceptedSeat]) -> Receipt:
            calls.append(len(offers))
            if len(calls) == 1:
                if sent:
                    await real(job_id, offers)
                raise RpcError("connection reset while waiting for the receipt")
            return await real(job_id, offers)

        chain.assign = flaky  # type: ignore[method-assign]
        job_id = await h.create_job(2)
        with pytest.raises(RpcError):
            await h.step(job_id)
        accepted = await h.slots(job_id)
        assert [s.state for s in accepted] == [P.ACCEPTED, P.ACCEPTED]
        assert all(s.accept_sig and s.accept_expiry for s in accepted)
        await h.run(job_id, settled)
        assert calls == ([2] if sent else [2, 2])
        assert all(len(p.offers) == 1 for p in h.providers)  # consent was not asked again
        key = JobId(bytes.fromhex(job_id[2:]))
        assert len(h.chain(h.coordinator).get_seats(key)) == 2


async def test_an_invalid_spec_fails_the_job_and_aborts_it(tmp_path: Path) -> None:
    async with harness(tmp_path, 2) as h:
        job_id = await h.create_job(2, spec=b"name: [unclosed")
        job = await h.run(job_id, lambda j: j.state is S.FAILED)
        assert (job.failure_reason or "").startswith("invalid spec")
        assert job.abort_tx is not None and not await h.slots(job_id)
        assert not any(p.offers for p in h.providers)


async def test_a_skipped_settlement_is_retried_then_fails_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(closing, "backoff_s", lambda attempts: 0.0)
    async with harness(tmp_path, 2) as h:
        skipped = SettleResult(None, error="settlement skipped by the market: NoMajority")

        async def skip(settlement: object) -> SettleResult:
            return skipped

        h.driver.closer.settler.settle = skip  # type: ignore[method-assign]
        job_id = await h.create_job(2)
        job = await h.run(job_id, lambda j: j.settle_attempts == 1)
        assert job.state is S.REVEALING
        job = await h.run(job_id, lambda j: j.state is S.FAILED)
        assert job.settle_attempts == h.driver.config.settle_attempts
        assert (
            job.failure_reason == "settlement failed: settlement skipped by the market: NoMajority"
        )
        assert job.abort_tx is None  # its providers committed: no abort, they may finalize


async def test_the_verdicts_bills_match_what_the_market_paid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with harness(tmp_path, 2) as h:
        h.providers[0].runtime_ms, h.providers[1].runtime_ms = 7_000, 30_001
        job_id = await h.create_job(2)
        await h.run(job_id, settled)
        event = (await h.store.events(job_id))[-1]
        assert event.state is S.SETTLED
        expected = {s.idx: (s.billed_ms, s.pay) for s in await h.slots(job_id)}
        assert {
            int(i): (b["billed_ms"], int(b["pay"])) for i, b in event.detail["billed"].items()
        } == expected
        assert "the market billed" not in caplog.text


async def test_a_job_no_provider_meets_waits_and_explain_names_each_ones_lack(
    tmp_path: Path,
) -> None:
    picky = SPEC.replace(
        "resources: {gpus: 0}", 'resources: {gpus: 1, requires: {min_driver: "550.54"}}'
    )
    async with harness(tmp_path, 2) as h:
        job_id = await h.create_job(2, spec=canonical_spec(parse_spec(picky)))
        for _ in range(3):
            await h.step(job_id)
        job = await h.job(job_id)
        assert job.state in (S.CREATED, S.MATCHING) and job.waiting is not None
        assert "2 does not meet requires: vendor nvidia, driver >= 550.54" in job.waiting
        explained = await h.store.explanation(job_id) or []
        assert {c["address"]: c["reason"] for c in explained} == {
            p.address: "filtered: vendor none (no GPU) is not nvidia; driver unknown < 550.54"
            for p in h.providers
        }


async def test_a_settled_jobs_result_is_kept_once_by_the_coordinators_node(
    tmp_path: Path,
) -> None:
    fetched: list[str] = []

    async def fetch(cid: str) -> None:
        fetched.append(cid)

    async with harness(tmp_path, 3) as h:
        results = PinRetention(h.content, tmp_path / "result-pins.json", 3600, fetch=fetch)
        h.driver.results = results
        job_id = await h.create_job(2)
        job = await h.run(job_id, settled)
        assert job.result_cid is not None
        assert await h.driver.step(job_id)  # the ended job's last step keeps its result
        assert await h.driver.step(job_id)  # stepped again: still held once
        assert results.pending == {job.result_cid}
        assert list(results.holds) == [job.result_cid]
        assert await results.pin_pending() == [job.result_cid]
        assert fetched == [job.result_cid] and results.pending == set()


async def test_a_job_whose_inputs_exceed_a_providers_stated_limit_is_seated_elsewhere(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, 3) as h:
        small = h.providers[0]  # the first by slot: it would win every tie
        limited = small.advert(("/ip4/127.0.0.1/tcp/4000",))
        h.book.accept(limited.model_copy(update={"max_input_bytes": 1 << 20}))
        data = await h.content.add_bytes(b"\x07" * (2 << 20) + b"!")  # just over 2 MiB
        spec = parse_spec(SPEC + f"inputs: [{{name: data, cid: {data}}}]\n")
        job_id = await h.create_job(2, spec=canonical_spec(spec))
        await h.step(job_id)
        job = await h.job(job_id)
        assert job.requirements is not None and job.requirements["input_bytes"] == (2 << 20) + 1
        seated = {s.address for s in await h.slots(job_id)}
        assert seated == {h.providers[1].address, h.providers[2].address}
        explained = {c["address"]: c["reason"] for c in await h.store.explanation(job_id) or []}
        assert explained[small.address] == "filtered: input 2MiB exceeds its 1MiB input limit"


async def test_a_replacement_seat_also_skips_a_provider_whose_limit_is_below_the_inputs(
    tmp_path: Path,
) -> None:
    rates = [10**6, 2 * 10**6, 3 * 10**6, 4 * 10**6]
    async with harness(tmp_path, 4, rates=rates) as h:
        first, second, limited, spare = h.providers
        first.fail_with = (FailureKind.SANDBOX_ERROR, "disk full")
        advert = limited.advert(("/ip4/127.0.0.1/tcp/4002",))
        h.book.accept(advert.model_copy(update={"max_input_bytes": 1 << 20}))
        data = await h.content.add_bytes(b"\x07" * (2 << 20))
        spec = parse_spec(SPEC + f"inputs: [{{name: data, cid: {data}}}]\n")
        job_id = await h.create_job(2, spec=canonical_spec(spec))
        await h.run(job_id, lambda j: j.state is S.REVEALING)
        slots = await h.slots(job_id)
        assert [(s.address, s.state) for s in slots] == [
            (first.address, P.REPLACED),
            (second.address, P.REVEALED),
            (spare.address, P.REVEALED),
        ]
