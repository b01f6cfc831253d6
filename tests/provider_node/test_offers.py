"""Job offers through the server on the fake chain: a signed Accept the market takes, a
Decline for everything outside the policy, and the Assignment checked against the Accept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from protocol import eip712
from protocol.errors import SignatureError
from protocol.ids import Cid, JobId, Wei
from protocol.messages import (
    Accept,
    Ack,
    Assignment,
    Cancel,
    Commitment,
    Decline,
    ErrorCode,
    ErrorReply,
    JobOffer,
)
from protocol.signing import decode_signed, encode_signed, sign_message
from provider_node.jobstore import LocalPhase
from tests.provider_node.chainworld import CAP, PRICE, RATE
from tests.provider_node.jobharness import Harness, ask, wait_for

pytestmark = pytest.mark.timeout(60)

SLEEPY = "import time\ntime.sleep(30)\n"


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness.create(tmp_path, "offers-test")


async def new_job(harness: Harness, code: str = SLEEPY) -> tuple[JobId, Cid, Cid]:
    spec_cid, code_cid = await harness.job(code)
    return harness.cw.create_job(spec_cid), spec_cid, code_cid


def offer_for(harness: Harness, job_id: JobId, spec_cid: str, **changes: Any) -> JobOffer:
    fields: dict[str, Any] = {
        "job_id": job_id,
        "provider": harness.provider.address,
        "coordinator": harness.coordinator.address,
        "seat": 0,
        "price": PRICE,
        "rate_per_hour": RATE,
        "expiry": harness.cw.world.time + 60,
        "spec_cid": spec_cid,
    }
    fields.update(changes)
    return JobOffer(**fields)


def assignment_for(harness: Harness, offer: JobOffer, code_cid: Cid) -> Assignment:
    now = harness.cw.world.time
    return Assignment(
        job_id=offer.job_id,
        provider=offer.provider,
        coordinator=offer.coordinator,
        seat=offer.seat,
        price=offer.price,
        spec_cid=offer.spec_cid,
        input_cids={"code": code_cid},
        seed=1,
        commit_deadline=now + 600,
        reveal_deadline=now + 900,
    )


async def test_accept_binds_the_chain_terms_and_the_market_takes_it(harness: Harness) -> None:
    job_id, spec_cid, code_cid = await new_job(harness)
    offer = offer_for(harness, job_id, spec_cid)
    async with harness.server() as server:
        accept = await ask(harness, server, offer)
        assert isinstance(accept, Accept), accept
        assert (accept.job_id, accept.seat, accept.price, accept.rate_per_hour, accept.expiry) == (
            job_id,
            0,
            PRICE,
            RATE,
            offer.expiry,
        )
        terms_hash = harness.cw.chain("coordinator").job_terms(job_id).terms_hash()
        accept.verify(harness.domain, terms_hash)
        typed = eip712.accept_typed_data(
            harness.domain, job_id, accept.provider, 0, PRICE, RATE, terms_hash, offer.expiry
        )
        assert eip712.recover_typed(typed, accept.signature) == harness.provider.address
        with pytest.raises(SignatureError):
            accept.verify(harness.domain, b"\x07" * 32)  # other terms: not this consent
        # The same offer asked again gets the same consent.
        assert await ask(harness, server, offer.model_copy()) == accept

        harness.cw.seat(accept)  # the market verifies the Accept and locks the stake
        info = harness.cw.chain("provider").provider_info(harness.provider.address)
        assert info.locked == 5 * PRICE
        reply = await ask(harness, server, assignment_for(harness, offer, code_cid))
        assert isinstance(reply, Ack)
        assert server.offers is not None and server.offers.book.get(job_id) is None


async def test_busy_provider_declines_as_busy(harness: Harness) -> None:
    first, spec1, _ = await new_job(harness)
    second, spec2, _ = await new_job(harness)
    async with harness.server(max_concurrent=1) as server:
        assert isinstance(await ask(harness, server, offer_for(harness, first, spec1)), Accept)
        reply = await ask(harness, server, offer_for(harness, second, spec2))
        assert isinstance(reply, Decline) and reply.busy and "slots" in reply.reason


async def test_coordinator_outside_the_allow_list_is_declined_unread(harness: Harness) -> None:
    stranger = harness.cw.ids["other"]
    nowhere = JobId(b"\x05" * 32)  # a chain read would say "no such job"
    spec_cid, _ = await harness.job(SLEEPY)
    offer = offer_for(harness, nowhere, spec_cid, coordinator=stranger.address)
    async with harness.server() as server:
        reply = await ask(harness, server, offer, signer=stranger)
        assert isinstance(reply, Decline) and not reply.busy
        assert "not allow-listed" in reply.reason


async def test_offer_signed_by_another_than_its_coordinator(harness: Harness) -> None:
    job_id, spec_cid, _ = await new_job(harness)
    stranger = harness.cw.ids["other"]
    own = offer_for(harness, job_id, spec_cid, coordinator=stranger.address)
    signed = sign_message(own, stranger)
    # The stranger's envelope around an offer that names the real coordinator.
    forged = signed.model_copy(update={"body": offer_for(harness, job_id, spec_cid)})
    async with harness.server() as server:
        raw = await server.handle(encode_signed(forged), stranger.peer_id)
        reply = decode_signed(raw).body
        assert isinstance(reply, ErrorReply) and reply.code is ErrorCode.BAD_SIGNATURE
        assert server.offers is not None and len(server.offers.book) == 0


async def test_policy_declines_carry_the_reason(harness: Harness) -> None:
    job_id, spec_cid, _ = await new_job(harness)
    async with harness.server() as server:
        over = await ask(harness, server, offer_for(harness, job_id, spec_cid, price=CAP + 1))
        assert isinstance(over, Decline) and "above the job's cap" in over.reason
        cheap = await ask(
            harness, server, offer_for(harness, job_id, spec_cid, rate_per_hour=RATE - 1)
        )
        assert isinstance(cheap, Decline) and "below this provider's minimum" in cheap.reason
        unknown = await ask(harness, server, offer_for(harness, JobId(b"\x06" * 32), spec_cid))
        assert isinstance(unknown, Decline) and unknown.reason == "no such job on chain"
        assert server.offers is not None and len(server.offers.book) == 0


async def test_assignment_must_match_the_accepted_offer(harness: Harness) -> None:
    job_id, spec_cid, code_cid = await new_job(harness)
    offer = offer_for(harness, job_id, spec_cid)
    async with harness.server() as server:
        assert isinstance(await ask(harness, server, offer), Accept)
        # The chain seats the provider at another price (an older consent, say): the chain
        # backs the Assignment but this daemon accepted something else.
        harness.seat(job_id, price=PRICE - 1)
        cheaper = offer.model_copy(update={"price": Wei(PRICE - 1)})
        other = assignment_for(harness, cheaper, code_cid)
        reply = await ask(harness, server, other)
        assert isinstance(reply, ErrorReply) and reply.code is ErrorCode.NOT_ASSIGNED
        assert "accepted seat 0" in reply.message
        again = await ask(harness, server, offer_for(harness, job_id, spec_cid, seat=1))
        # Seat 1 is free, but this provider sits at seat 0 already.
        assert isinstance(again, Decline) and "seats this provider" in again.reason


async def test_a_full_provider_queues_up_to_max_queued_jobs_and_runs_them_in_turn(
    harness: Harness,
) -> None:
    quick = "import time\ntime.sleep(1)\n"
    jobs = [await new_job(harness, quick) for _ in range(4)]
    first, queued, refused, dropped = jobs
    async with harness.server(max_concurrent=1, max_queued=2) as server:
        for job_id, spec_cid, code_cid in (first, queued):
            offer = offer_for(harness, job_id, spec_cid)
            accept = await ask(harness, server, offer)
            assert isinstance(accept, Accept), accept
            harness.cw.seat(accept)
            assert isinstance(
                await ask(harness, server, assignment_for(harness, offer, code_cid)), Ack
            )
        # The slot and the queue's first place are held: one more waits, a fourth is busy.
        third = offer_for(harness, dropped[0], dropped[1])
        accepted = await ask(harness, server, third)
        assert isinstance(accepted, Accept)
        harness.cw.seat(accepted)
        assert isinstance(
            await ask(harness, server, assignment_for(harness, third, dropped[2])), Ack
        )
        busy = await ask(harness, server, offer_for(harness, refused[0], refused[1]))
        assert isinstance(busy, Decline) and busy.busy
        assert busy.reason == "all 1 job slots taken and 2 queued"
        # A queued job cancelled while it waits never runs.
        cancel = Cancel(
            job_id=dropped[0],
            provider=harness.provider.address,
            coordinator=harness.coordinator.address,
            reason="replaced",
        )
        assert isinstance(await ask(harness, server, cancel), Ack)
        done = await wait_for(harness.reporter, Commitment, first[0])
        after = await wait_for(harness.reporter, Commitment, queued[0])
        sent = harness.reporter.sent
        assert sent.index(done) < sent.index(after)  # one slot: the queued job ran second
        with trio.fail_after(30):
            while server.active:
                await trio.sleep(0.05)
    record = harness.jobs.load(dropped[0])
    assert record is not None and record.phase is LocalPhase.CANCELLED
    committed = [m for m in harness.reporter.sent if isinstance(m, Commitment)]
    assert [m.job_id for m in committed] == [first[0], queued[0]]
