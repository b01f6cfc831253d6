"""The job server and worker on fakes: in-memory content store, fake chain, process runtime.

Covers the whole provider side of a job: a signed assignment is checked against the chain's
seat, the job runs, the commitment binds the CID computed independently from the expected
outputs and the measured runtime, the coordinator's receipt is kept, nothing is published
before the reveal request, the reveal opens the commitment and publishes exactly that CID,
failures become failure reports (and, when the job is at fault, a committed failure
output), and a restarted provider can still reveal from its persisted record.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from protocol import eip712
from protocol.ids import JobId, Wei
from protocol.ipfs.cid import result_digest
from protocol.ipfs.local import path_ref
from protocol.messages import (
    Ack,
    Cancel,
    Commitment,
    ErrorCode,
    ErrorReply,
    FailureKind,
    FailureReport,
    HandBack,
    LogChunk,
    Message,
    Reveal,
)
from provider_node.gpus import GpuPool
from provider_node.jobstore import LocalPhase, SequenceFile
from provider_node.runtimes import PreparedJob, ProcessRuntime, RunLimits, RunOutcome, RunResult
from provider_node.worker import _OUTCOME_KIND, JobWorker, WorkerConfig
from tests.provider_node.chainworld import PRICE
from tests.provider_node.jobharness import FakeReporter, Harness, wait_for
from tests.provider_node.jobharness import ask as ask_as

pytestmark = pytest.mark.timeout(120)

GOOD_JOB = """
import os, pathlib
out = pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"])
(out / "answer.txt").write_text("seed=" + os.environ["GPUMARKET_SEED"] + "\\n")
(out / "nested").mkdir()
(out / "nested" / "data.bin").write_bytes(bytes(range(256)) * 40)
print("done")
"""

ESCAPING_JOB = """
import os, pathlib
out = pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"])
(out / "passwd").symlink_to("/etc/passwd")
"""

CHATTY_JOB = """
import os, pathlib, time
for i in range(12):
    print("progress", i)
    time.sleep(0.1)
(pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"]) / "done").write_text("yes")
"""

FAILING_JOB = """
import sys
print("about to fail")
sys.exit(3)
"""


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness.create(tmp_path, "worker-test")


def expected_outputs_cid(tmp: Path, seed: int) -> str:
    """The outputs GOOD_JOB must produce, built here and hashed independently."""
    out = tmp / "expected"
    (out / "nested").mkdir(parents=True)
    (out / "answer.txt").write_text(f"seed={seed}\n")
    (out / "nested" / "data.bin").write_bytes(bytes(range(256)) * 40)
    return path_ref(out).text


async def test_job_commits_then_reveals_the_independent_cid(harness: Harness) -> None:
    assignment = await harness.assignment(GOOD_JOB)
    async with harness.server() as server:
        reply = await ask_as(harness, server, assignment)
        assert isinstance(reply, Ack) and reply.job_id == assignment.job_id
        commitment = await wait_for(harness.reporter, Commitment, assignment.job_id)
        assert isinstance(commitment, Commitment)
        commitment.verify(harness.domain)
        expected = expected_outputs_cid(harness.tmp, 42)
        record = harness.jobs.load(assignment.job_id)
        assert record is not None and record.phase is LocalPhase.COMMITTED
        assert record.result_cid == expected and record.salt is not None
        # The runtime is measured around the sandbox run and bound into the commitment.
        assert record.runtime_ms is not None and 0 < record.runtime_ms < 60_000
        address = harness.provider.address
        assert commitment.commit_hash == eip712.commit_hash(
            assignment.job_id, address, result_digest(expected), record.runtime_ms, record.salt
        )
        assert record.receipt_signature is not None and record.seat == 0
        chain = harness.cw.chain("provider")
        terms, seats = chain.job_terms(assignment.job_id), chain.get_seats(assignment.job_id)
        assert record.commit_deadline == terms.commit_deadline(seats[0])
        # Commit before publishing: nothing of the outputs is in the store yet.
        assert not await harness.store.has(expected)
        logs = [m for m in harness.reporter.sent if isinstance(m, LogChunk)]
        assert logs and b"done" in b"".join(m.data for m in logs)

        request = harness.reveal_request(assignment)
        reveal = await ask_as(harness, server, request)
        assert isinstance(reveal, Reveal)
        reveal.verify(harness.domain)
        assert reveal.runtime_ms == record.runtime_ms
        assert reveal.matches(commitment) and reveal.result_cid == expected
        fetched = await harness.store.get(expected, harness.tmp / "fetched")
        assert (fetched / "answer.txt").read_text() == "seed=42\n"
        loaded = harness.jobs.load(assignment.job_id)
        assert loaded is not None and loaded.phase is LocalPhase.REVEALED
        # Revealed: the run dir is gone, the record stays, and asking again gets the same.
        assert not harness.jobs.run_dir(assignment.job_id).exists()
        again = await ask_as(harness, server, request)
        assert isinstance(again, Reveal) and again == reveal


async def test_logs_stream_while_the_job_runs(harness: Harness) -> None:
    assignment = await harness.assignment(CHATTY_JOB)
    done = harness.jobs.run_dir(assignment.job_id) / "outputs" / "done"
    before_exit: list[LogChunk] = []

    class Watching(FakeReporter):
        async def send(self, body: Message) -> Message | None:
            if isinstance(body, LogChunk) and not done.exists():
                before_exit.append(body)
            return await super().send(body)

    harness.reporter = Watching(harness.cw)
    async with harness.server() as server:
        assert isinstance(await ask_as(harness, server, assignment), Ack)
        await wait_for(harness.reporter, Commitment, assignment.job_id)
    chunks = [m for m in harness.reporter.of(LogChunk) if isinstance(m, LogChunk)]
    assert len(before_exit) > 1 and all(not c.final for c in before_exit)
    assert b"".join(c.data for c in chunks) == b"".join(b"progress %d\n" % i for i in range(12))
    assert [c.offset for c in chunks] == [
        sum(len(c.data) for c in chunks[:i]) for i in range(len(chunks))
    ]
    assert chunks[-1].final


async def test_failing_job_reports_commits_its_failure_and_server_keeps_serving(
    harness: Harness,
) -> None:
    failing = await harness.assignment(FAILING_JOB)
    good = await harness.assignment(GOOD_JOB)
    async with harness.server() as server:
        assert isinstance(await ask_as(harness, server, failing), Ack)
        report = await wait_for(harness.reporter, FailureReport, failing.job_id)
        assert isinstance(report, FailureReport)
        assert report.kind is FailureKind.NONZERO_EXIT and report.exit_code == 3
        # The job's own fault: its canonical failure output is committed, before the report.
        commitment = await wait_for(harness.reporter, Commitment, failing.job_id)
        assert harness.reporter.sent.index(commitment) < harness.reporter.sent.index(report)
        assert isinstance(await ask_as(harness, server, good), Ack)
        assert isinstance(await wait_for(harness.reporter, Commitment, good.job_id), Commitment)
    record = harness.jobs.load(failing.job_id)
    assert record is not None and record.phase is LocalPhase.COMMITTED
    assert record.exit_class == "error" and "exit" in record.detail
    assert (harness.jobs.run_dir(failing.job_id) / "outputs" / "failure.json").is_file()
    assert harness.jobs.run_dir(good.job_id).is_dir()  # committed, not yet revealed
    value = harness.metrics.registry.get_sample_value
    assert value("gpumarket_provider_jobs_total", {"outcome": "nonzero_exit"}) == 1
    assert value("gpumarket_provider_jobs_total", {"outcome": "ok"}) == 1
    assert value("gpumarket_provider_job_duration_seconds_count", {"outcome": "ok"}) == 1


def test_every_failed_outcome_has_its_own_failure_kind() -> None:
    failed = [o for o in RunOutcome if o is not RunOutcome.OK]
    assert sorted(_OUTCOME_KIND) == sorted(failed)
    assert all(_OUTCOME_KIND[o].value == o.value for o in failed)


async def test_escaping_output_link_is_reported_as_refused(harness: Harness) -> None:
    assignment = await harness.assignment(ESCAPING_JOB)
    async with harness.server() as server:
        assert isinstance(await ask_as(harness, server, assignment), Ack)
        report = await wait_for(harness.reporter, FailureReport, assignment.job_id)
    assert isinstance(report, FailureReport)
    assert report.kind is FailureKind.OUTPUT_REFUSED and "passwd" in report.detail
    record = harness.jobs.load(assignment.job_id)
    assert record is not None and record.exit_class == "error"


async def test_bad_input_cid_is_a_failure_report_only(harness: Harness) -> None:
    assignment = await harness.assignment(GOOD_JOB)
    other = await harness.store.add_bytes(b"not the code the spec names")
    tampered = assignment.model_copy(update={"input_cids": {"code": other}})
    async with harness.server() as server:
        assert isinstance(await ask_as(harness, server, tampered), Ack)
        report = await wait_for(harness.reporter, FailureReport, assignment.job_id)
        assert isinstance(report, FailureReport) and report.kind is FailureKind.BAD_INPUT
    assert not harness.reporter.of(Commitment)
    record = harness.jobs.load(assignment.job_id)
    assert record is not None and record.phase is LocalPhase.FAILED and record.commit_hash is None


async def test_refuses_assignments_the_chain_does_not_back(harness: Harness) -> None:
    assignment = await harness.assignment(GOOD_JOB)
    unseated = await harness.assignment(GOOD_JOB, on_chain=False)
    stranger = harness.cw.ids["other"]
    async with harness.server() as server:
        forged = await ask_as(
            harness,
            server,
            assignment.model_copy(update={"coordinator": stranger.address}),
            signer=stranger,
        )
        assert isinstance(forged, ErrorReply) and forged.code is ErrorCode.BAD_SIGNATURE
        # On chain, but nobody is seated.
        not_ours = await ask_as(harness, server, unseated)
        assert isinstance(not_ours, ErrorReply) and not_ours.code is ErrorCode.WRONG_STATE
        wrong_price = await ask_as(
            harness, server, assignment.model_copy(update={"price": Wei(PRICE + 1)})
        )
        assert isinstance(wrong_price, ErrorReply) and wrong_price.code is ErrorCode.NOT_ASSIGNED
        wrong_seat = await ask_as(harness, server, assignment.model_copy(update={"seat": 1}))
        assert isinstance(wrong_seat, ErrorReply) and wrong_seat.code is ErrorCode.NOT_ASSIGNED
        other_spec = await ask_as(
            harness, server, assignment.model_copy(update={"spec_cid": unseated.spec_cid})
        )
        assert isinstance(other_spec, ErrorReply) and other_spec.code is ErrorCode.NOT_ASSIGNED
        unknown = await ask_as(
            harness, server, assignment.model_copy(update={"job_id": JobId(b"\x09" * 32)})
        )
        assert isinstance(unknown, ErrorReply) and unknown.code is ErrorCode.UNKNOWN_JOB
    assert harness.jobs.all() == []


async def test_restarted_provider_reveals_from_its_record(harness: Harness) -> None:
    assignment = await harness.assignment(GOOD_JOB)
    async with harness.server() as server:
        await ask_as(harness, server, assignment)
        commitment = await wait_for(harness.reporter, Commitment, assignment.job_id)
    request = harness.reveal_request(assignment)
    stranger = harness.cw.ids["other"]
    async with harness.server() as restarted:  # a new worker over the same records
        reveal = await ask_as(harness, restarted, request)
        assert isinstance(reveal, Reveal) and isinstance(commitment, Commitment)
        assert reveal.matches(commitment)
        refused = await ask_as(
            harness,
            restarted,
            request.model_copy(update={"coordinator": stranger.address}),
            stranger,
        )
        assert isinstance(refused, ErrorReply) and refused.code is ErrorCode.BAD_SIGNATURE


async def test_reveal_refused_when_outputs_changed(harness: Harness) -> None:
    assignment = await harness.assignment(GOOD_JOB)
    async with harness.server() as server:
        await ask_as(harness, server, assignment)
        await wait_for(harness.reporter, Commitment, assignment.job_id)
        answer = harness.jobs.run_dir(assignment.job_id) / "outputs" / "answer.txt"
        answer.write_text("tampered\n")
        reply = await ask_as(harness, server, harness.reveal_request(assignment))
        assert isinstance(reply, ErrorReply) and reply.code is ErrorCode.INTERNAL
        report = await wait_for(harness.reporter, FailureReport, assignment.job_id)
        assert isinstance(report, FailureReport)


async def test_cancel_stops_a_running_job(harness: Harness) -> None:
    slow = await harness.assignment("import time\ntime.sleep(60)\n")
    async with harness.server() as server:
        await ask_as(harness, server, slow)
        with trio.fail_after(30):
            while harness.jobs.load(slow.job_id).phase is not LocalPhase.RUNNING:  # type: ignore[union-attr]
                await trio.sleep(0.05)
        await trio.sleep(0.5)
        cancel = Cancel(
            job_id=slow.job_id,
            provider=harness.provider.address,
            coordinator=harness.coordinator.address,
            reason="replaced",
        )
        assert isinstance(await ask_as(harness, server, cancel), Ack)
        with trio.fail_after(30):
            while server.active:
                await trio.sleep(0.05)
    record = harness.jobs.load(slow.job_id)
    assert record is not None and record.phase is LocalPhase.CANCELLED
    assert not harness.jobs.run_dir(slow.job_id).exists()


async def test_restart_removes_run_dirs_left_by_finished_jobs(harness: Harness) -> None:
    bad = await harness.assignment(GOOD_JOB)
    good = await harness.assignment(GOOD_JOB)
    other = await harness.store.add_bytes(b"not the code the spec names")
    failing = bad.model_copy(update={"input_cids": {"code": other}})
    async with harness.server() as server:
        await ask_as(harness, server, failing)
        await ask_as(harness, server, good)
        await wait_for(harness.reporter, FailureReport, failing.job_id)
        await wait_for(harness.reporter, Commitment, good.job_id)
    # A stop between saving the final record and removing the run dir leaves this behind.
    leftover = harness.jobs.run_dir(failing.job_id) / "outputs" / "partial.bin"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"x" * 100)
    async with harness.server() as restarted:
        await restarted.resume()
    assert not harness.jobs.run_dir(failing.job_id).exists()
    assert harness.jobs.load(failing.job_id) is not None
    assert (harness.jobs.run_dir(good.job_id) / "outputs" / "answer.txt").is_file()


def test_advert_sequence_rises_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "seq.json"
    first = SequenceFile(path)
    a, b = first.next(), first.next()
    again = SequenceFile(path)
    assert a < b < again.next()
    os.remove(path)
    assert SequenceFile(path).next() > 0


async def test_a_crash_in_a_restart_task_is_contained(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = await harness.assignment(GOOD_JOB)
    async with harness.server() as server:
        await ask_as(harness, server, first)
        await wait_for(harness.reporter, Commitment, first.job_id)
    # A stop after computing, before committing: the restart commits in the background.
    record = harness.jobs.load(first.job_id)
    assert record is not None
    harness.jobs.save(record.model_copy(update={"phase": LocalPhase.COMPUTED}))
    second = await harness.assignment(GOOD_JOB)
    async with harness.server() as restarted:
        real = restarted.worker.send_commitment

        async def broken(record: Any, reporter: Any) -> Any:
            if record.job_id == first.job_id:
                raise RuntimeError("a bug in the commit path")
            return await real(record, reporter)

        monkeypatch.setattr(restarted.worker, "send_commitment", broken)
        await restarted.resume()
        # The crash ended its own task only: the server still runs jobs to a commitment.
        ack = await ask_as(harness, restarted, second)
        assert isinstance(ack, Ack), ack
        await wait_for(harness.reporter, Commitment, second.job_id)
    crashed = [r for r in caplog.records if "background task crashed" in r.getMessage()]
    assert [r.getMessage() for r in crashed] == [
        f"commit-{first.job_id.hex()[:12]}: background task crashed"
    ]


async def test_a_job_needing_packages_this_python_lacks_is_handed_back_unrun(
    harness: Harness,
) -> None:
    offered = {"numpy": "2.1.0", "torch": "2.13.0+cpu"}
    lacking = await harness.assignment(GOOD_JOB, packages="{numpy: '>=3', tqdm: ''}")
    fitting = await harness.assignment(GOOD_JOB, packages="{numpy: '>=2', Torch: ''}")
    worker = harness.worker(packages=offered)
    async with harness.server(worker=worker) as server:
        await ask_as(harness, server, lacking)
        await ask_as(harness, server, fitting)
        back = await wait_for(harness.reporter, HandBack, lacking.job_id)
        await wait_for(harness.reporter, Commitment, fitting.job_id)
    assert isinstance(back, HandBack)
    assert back.reason == "this provider's Python lacks numpy>=3 (has 2.1.0), tqdm (absent)"
    record = harness.jobs.load(lacking.job_id)
    assert record is not None and record.phase is LocalPhase.HANDED_BACK


class RecordingRuntime(ProcessRuntime):
    """The process runtime, keeping the limits each job was run under."""

    def __init__(self) -> None:
        super().__init__(unsafe=True)
        self.limits: list[RunLimits] = []

    async def run(self, job: PreparedJob) -> RunResult:
        self.limits.append(job.limits)
        return await super().run(job)


async def test_the_specs_cpus_and_memory_reach_the_runtimes_limits(harness: Harness) -> None:
    small = await harness.assignment(GOOD_JOB, resources="{cpus: 0.5, memory_gb: 1}")
    large = await harness.assignment(GOOD_JOB, resources="{memory_gb: 64}")
    runtime = RecordingRuntime()
    worker = JobWorker(
        harness.provider,
        harness.store,
        runtime,
        harness.jobs,
        harness.domain,
        GpuPool(()),
        WorkerConfig(memory_bytes=2 << 30),
        metrics=harness.metrics,
    )
    async with harness.server(worker=worker, max_concurrent=1) as server:
        await ask_as(harness, server, small)
        await wait_for(harness.reporter, Commitment, small.job_id)
        await ask_as(harness, server, large)
        await wait_for(harness.reporter, Commitment, large.job_id)
    assert [(lim.cpus, lim.memory_bytes) for lim in runtime.limits] == [
        (0.5, 1 << 30),
        (2.0, 2 << 30),  # the default quota; never more memory than the provider allows
    ]
