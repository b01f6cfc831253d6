"""The coordinator's receipt, and the chain fallback when the coordinator stays silent.

Jobs run for real (process runtime) on the fake chain; time is then moved with
``world.advance`` and the fallback's rounds are run by hand (``tick``), so each test says
exactly when the daemon acts on chain, and that a commit-only or silent coordinator still
lets the provider's result count (and be paid, via ``finalize``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from contracts.models import MS_PER_HOUR, JobStatus
from protocol.errors import ChainError
from protocol.ids import JobId
from protocol.ipfs.cid import result_digest
from protocol.messages import Ack, Assignment, Commitment, CommitReceipt, Reveal
from provider_node.fallback import ChainFallback, receipt_margin
from provider_node.jobstore import LocalJob, LocalPhase
from tests.provider_node.chainworld import COMMIT_WINDOW, PRICE, RATE, REVEAL_WINDOW
from tests.provider_node.jobharness import Harness, ReceiptMode, ask, wait_for

pytestmark = pytest.mark.timeout(90)

QUICK_JOB = """
import os, pathlib
(pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"]) / "out.txt").write_text("42")
"""


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness.create(tmp_path, "fallback-test")


async def committed_job(
    harness: Harness, mode: ReceiptMode, fallback: ChainFallback | None = None
) -> tuple[Assignment, LocalJob]:
    """Run QUICK_JOB to its commitment, the coordinator answering as ``mode`` says."""
    harness.reporter.mode = mode
    assignment = await harness.assignment(QUICK_JOB)
    async with harness.server(fallback=fallback) as server:
        assert isinstance(await ask(harness, server, assignment), Ack)
        await wait_for(harness.reporter, Commitment, assignment.job_id)
        record = harness.jobs.load(assignment.job_id)
        assert record is not None and record.phase is LocalPhase.COMMITTED
    return assignment, record


def advance_to(harness: Harness, timestamp: int) -> None:
    harness.cw.world.advance(timestamp - harness.cw.world.time)


def deadlines(harness: Harness, job_id: JobId) -> tuple[int, int, int]:
    """(commit deadline of seat 0, reveal open, reveal close)."""
    chain = harness.cw.chain("provider")
    terms, seats = chain.job_terms(job_id), chain.get_seats(job_id)
    return terms.commit_deadline(seats[0]), terms.reveal_open(seats), terms.reveal_close(seats)


# ---------------------------------------------------------------------------- receipts
@pytest.mark.parametrize("mode", ["ack", "wrong_seat", "forged"])
async def test_only_a_valid_receipt_is_kept(harness: Harness, mode: ReceiptMode) -> None:
    _, record = await committed_job(harness, mode)
    assert record.receipt_signature is None


async def test_receipt_checks_name_each_mismatch(harness: Harness) -> None:
    _, record = await committed_job(harness, "valid")
    assert record.receipt_signature is not None
    commitment = harness.reporter.of(Commitment)[0]
    assert isinstance(commitment, Commitment)
    receipt = await harness.reporter.send(commitment)
    assert isinstance(receipt, CommitReceipt)
    worker = harness.worker()
    assert worker.receipt_signature(record, receipt) == record.receipt_signature
    stranger = harness.cw.ids["other"].address
    for bad in (
        receipt.model_copy(update={"commit_hash": b"\x01" * 32}),
        receipt.model_copy(update={"coordinator": stranger}),
        receipt.model_copy(update={"seat": 1}),
        receipt.model_copy(update={"job_id": JobId(b"\x02" * 32)}),
        receipt.model_copy(update={"signature": record.commit_signature}),
        Ack(sender=harness.coordinator.address, of="job.commitment"),
        None,
    ):
        assert worker.receipt_signature(record, bad) is None, bad


# --------------------------------------------------------------------- on-chain commit
async def test_no_receipt_means_commit_then_reveal_on_chain_and_get_paid(
    harness: Harness,
) -> None:
    fallback = harness.fallback()
    assignment, record = await committed_job(harness, "ack", fallback)
    job_id = assignment.job_id
    assert fallback.watched == {job_id}
    chain = harness.cw.chain("provider")
    deadline, opens, closes = deadlines(harness, job_id)
    margin = receipt_margin(COMMIT_WINDOW)
    assert margin == 30

    advance_to(harness, deadline - margin - 1)
    await fallback.tick()  # not yet: the receipt may still come
    assert not chain.on_chain_entry(job_id, 0).committed and fallback.committed == 0

    advance_to(harness, deadline - margin)
    await fallback.tick()
    entry = chain.on_chain_entry(job_id, 0)
    assert entry.committed and entry.commit_hash == record.commit_hash
    assert harness.jobs.load(job_id).committed_on_chain  # type: ignore[union-attr]
    await fallback.tick()  # done once: no second commit
    assert fallback.committed == 1
    # A commit that went through unseen (say the daemon stopped before saving) is found.
    harness.jobs.update(job_id, committed_on_chain=False)
    await fallback.tick()
    assert harness.jobs.load(job_id).committed_on_chain and fallback.committed == 1  # type: ignore[union-attr]

    advance_to(harness, opens)
    await fallback.tick()  # reveals open strictly after every commit deadline
    assert not chain.on_chain_entry(job_id, 0).revealed
    advance_to(harness, opens + 1)
    await fallback.tick()  # never asked for the reveal: post it on chain
    entry = chain.on_chain_entry(job_id, 0)
    assert entry.revealed and entry.votes and entry.runtime_ms == record.runtime_ms
    assert entry.result == result_digest(record.result_cid or "")
    final = harness.jobs.load(job_id)
    assert final is not None and final.revealed_on_chain and final.chain_done
    assert fallback.watched == frozenset() and opens + REVEAL_WINDOW == closes

    # After the settle deadline anyone finalizes: the provider is paid its billed runtime.
    advance_to(harness, chain.job_terms(job_id).settle_deadline + 1)
    harness.cw.chain("requester").finalize(job_id)
    assert chain.job_status(job_id)[0] is JobStatus.SETTLED
    runtime = record.runtime_ms or 0
    expected = min(PRICE, -(-RATE * runtime // MS_PER_HOUR))
    assert chain.provider_info(harness.provider.address).earned == expected


async def test_no_receipt_and_deadline_missed_leaves_nothing_to_reveal(harness: Harness) -> None:
    fallback = harness.fallback()
    assignment, _ = await committed_job(harness, "ack", fallback)
    deadline, opens, _ = deadlines(harness, assignment.job_id)
    advance_to(harness, deadline)  # the fallback did not run in time (daemon down, say)
    await fallback.tick()
    assert fallback.committed == 0 and fallback.watched  # a late receipt could still come
    advance_to(harness, opens + 1)
    await fallback.tick()
    record = harness.jobs.load(assignment.job_id)
    assert record is not None and record.chain_done and not record.revealed_on_chain
    assert not harness.cw.chain("provider").on_chain_entry(assignment.job_id, 0).revealed


# --------------------------------------------------------------------- on-chain reveal
async def test_receipt_but_no_reveal_request_reveals_on_chain(harness: Harness) -> None:
    fallback = harness.fallback()
    assignment, record = await committed_job(harness, "valid", fallback)
    job_id = assignment.job_id
    assert record.receipt_signature is not None
    deadline, opens, _ = deadlines(harness, job_id)
    advance_to(harness, deadline - 1)
    await fallback.tick()  # a receipt: no on-chain commit needed
    chain = harness.cw.chain("provider")
    assert not chain.on_chain_entry(job_id, 0).committed
    advance_to(harness, opens + 1)
    await fallback.tick()
    entry = chain.on_chain_entry(job_id, 0)
    assert entry.revealed and entry.votes and not entry.committed  # the receipt made it vote
    assert fallback.revealed == 1 and fallback.committed == 0


async def test_revealed_to_the_coordinator_waits_for_its_settlement(harness: Harness) -> None:
    fallback = harness.fallback()
    assignment, _ = await committed_job(harness, "valid", fallback)
    job_id = assignment.job_id
    async with harness.server(fallback=fallback) as server:
        reveal = await ask(harness, server, harness.reveal_request(assignment))
        assert isinstance(reveal, Reveal)
    _, opens, _ = deadlines(harness, job_id)
    chain = harness.cw.chain("provider")
    advance_to(harness, opens + REVEAL_WINDOW // 2 - 1)
    await fallback.tick()  # asked: the coordinator gets half the window to settle
    assert not chain.on_chain_entry(job_id, 0).revealed
    advance_to(harness, opens + REVEAL_WINDOW // 2)
    await fallback.tick()  # it did not: the reveal goes on chain before the window closes
    entry = chain.on_chain_entry(job_id, 0)
    assert entry.revealed and entry.votes and entry.runtime_ms == reveal.runtime_ms


async def test_closed_job_needs_nothing_on_chain(harness: Harness) -> None:
    fallback = harness.fallback()
    assignment, _ = await committed_job(harness, "ack", fallback)
    harness.cw.chain("coordinator").abort(assignment.job_id)
    await fallback.tick()
    record = harness.jobs.load(assignment.job_id)
    assert record is not None and record.chain_done and fallback.watched == frozenset()
    assert fallback.committed == 0


@dataclass
class FailingChain:
    """The provider's chain client, whose on-chain commit always fails."""

    inner: object
    tries: int = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def commit_on_chain(self, job_id: JobId, seat: int, commit_hash: bytes) -> object:
        self.tries += 1
        raise ChainError("the node is down")


async def test_chain_errors_are_retried_a_bounded_number_of_times(harness: Harness) -> None:
    failing = FailingChain(harness.cw.chain("provider"))
    fallback = ChainFallback(failing, harness.jobs, max_attempts=3)  # type: ignore[arg-type]
    assignment, _ = await committed_job(harness, "ack", fallback)
    deadline, _, _ = deadlines(harness, assignment.job_id)
    advance_to(harness, deadline - 5)
    for _ in range(5):
        await fallback.tick()  # never raises
    assert failing.tries == 3
    record = harness.jobs.load(assignment.job_id)
    assert record is not None and record.chain_done and not record.committed_on_chain


async def test_restart_watches_what_may_still_need_the_chain(harness: Harness) -> None:
    assignment, _ = await committed_job(harness, "ack")
    fallback = harness.fallback()
    async with harness.server(fallback=fallback) as restarted:
        await restarted.resume()
    assert fallback.watched == {assignment.job_id}
