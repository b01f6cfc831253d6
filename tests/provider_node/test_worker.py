"""The job server and worker on fakes: in-memory content store, fake chain, process runtime.

Covers the whole provider side of a job: a signed assignment is checked against the chain,
the job runs, the commitment binds the CID computed independently from the expected
outputs, nothing is published before the reveal request, the reveal opens the commitment
and publishes exactly that CID, failures become failure reports, and a restarted provider
can still reveal from its persisted record.
"""

from __future__ import annotations

import os
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from contracts.models import Assignment as ChainAssignment
from contracts.models import JobStatus
from protocol import eip712
from protocol.identity import Identity
from protocol.ids import Address, JobId, Wei
from protocol.ipfs import MemoryContentStore
from protocol.ipfs.cid import result_digest
from protocol.ipfs.local import path_ref
from protocol.messages import (
    Ack,
    Assignment,
    Cancel,
    Commitment,
    ErrorCode,
    ErrorReply,
    FailureKind,
    FailureReport,
    LogChunk,
    Message,
    Reveal,
    RevealRequest,
)
from protocol.p2p.testing import dev_private_key
from protocol.signing import decode_signed, encode_signed, sign_message
from provider_node.gpus import GpuPool
from provider_node.jobstore import JobStore, Phase, SequenceFile
from provider_node.metrics import ProviderMetrics
from provider_node.runtimes import Outcome, ProcessRuntime
from provider_node.server import JobServer
from provider_node.worker import _OUTCOME_KIND, JobWorker, WorkerConfig

pytestmark = pytest.mark.timeout(120)

PROVIDER = Identity.from_private_key(dev_private_key(1, "worker-test"))
COORDINATOR = Identity.from_private_key(dev_private_key(2, "worker-test"))
STRANGER = Identity.from_private_key(dev_private_key(3, "worker-test"))
DOMAIN = eip712.Eip712Domain(chain_id=31337, verifying_contract=Address(STRANGER.address))
PRICE = Wei(1_000_000)

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


@dataclass(frozen=True)
class FakeJob:
    """The fields of a chain job record that the provider reads."""

    job_id: JobId
    coordinator: Address
    status: JobStatus


@dataclass
class FakeChain:
    """The provider's view of the chain, in memory."""

    address: Address = PROVIDER.address
    jobs: dict[JobId, FakeJob] = field(default_factory=dict)
    assignments: dict[JobId, list[ChainAssignment]] = field(default_factory=dict)

    def add_job(self, job_id: JobId, coordinator: Address, providers: list[Address]) -> None:
        self.jobs[job_id] = FakeJob(job_id, coordinator, JobStatus.ASSIGNED)
        self.assignments[job_id] = [ChainAssignment(p, PRICE) for p in providers]

    def get_job(self, job_id: JobId) -> FakeJob:
        return self.jobs[job_id]

    def get_assignment(self, job_id: JobId) -> list[ChainAssignment]:
        return self.assignments.get(job_id, [])


@dataclass
class FakeReporter:
    sent: list[Message] = field(default_factory=list)

    async def send(self, body: Message) -> None:
        self.sent.append(body)

    def of(self, cls: type) -> list[Message]:
        return [m for m in self.sent if isinstance(m, cls)]


@dataclass
class Harness:
    store: MemoryContentStore
    chain: FakeChain
    reporter: FakeReporter
    jobs: JobStore
    tmp: Path
    counter: int = 0
    metrics: ProviderMetrics = field(default_factory=lambda: ProviderMetrics(use_nvml=False))

    def worker(self) -> JobWorker:
        return JobWorker(
            PROVIDER,
            self.store,
            ProcessRuntime(unsafe=True),
            self.jobs,
            DOMAIN,
            GpuPool(()),
            WorkerConfig(memory_bytes=2 << 30),
            metrics=self.metrics,
        )

    def server(self, max_concurrent: int = 2) -> JobServer:
        return JobServer(
            PROVIDER,
            self.chain,  # type: ignore[arg-type]
            self.worker(),
            self.jobs,
            lambda peer: self.reporter,
            max_concurrent=max_concurrent,
        )

    async def assignment(self, code: str, *, on_chain: bool = True) -> Assignment:
        self.counter += 1
        code_dir = self.tmp / f"code{self.counter}"
        code_dir.mkdir()
        (code_dir / "main.py").write_text(textwrap.dedent(code))
        code_cid = await self.store.add_directory(code_dir)
        spec = (
            "name: unit-job\n"
            "runtime: {kind: torch, entrypoint: main.py}\n"
            f"inputs: [{{name: code, cid: {code_cid}}}]\n"
            'price: {max_per_provider: "1"}\n'
            "timeout: 60s\nmax_output: 1MiB\n"
        )
        spec_cid = await self.store.add_bytes(spec.encode())
        job_id = JobId(self.counter.to_bytes(32, "big"))
        if on_chain:
            self.chain.add_job(job_id, COORDINATOR.address, [PROVIDER.address])
        now = int(time.time())
        return Assignment(
            job_id=job_id,
            provider=PROVIDER.address,
            coordinator=COORDINATOR.address,
            price=PRICE,
            spec_cid=spec_cid,
            input_cids={"code": code_cid},
            seed=42,
            commit_deadline=now + 600,
            reveal_deadline=now + 1200,
        )


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(
        store=MemoryContentStore(),
        chain=FakeChain(),
        reporter=FakeReporter(),
        jobs=JobStore(tmp_path / "provider"),
        tmp=tmp_path,
    )


async def ask(server: JobServer, body: Message, signer: Identity = COORDINATOR) -> Message:
    reply = await server.handle(encode_signed(sign_message(body, signer)), signer.peer_id)
    signed = decode_signed(reply)
    assert signed.signer == PROVIDER.address
    return signed.body


async def wait_for(reporter: FakeReporter, cls: type, job_id: JobId) -> Message:
    with trio.fail_after(90):
        while True:
            for message in reporter.of(cls):
                if getattr(message, "job_id", None) == job_id:
                    return message
            await trio.sleep(0.05)


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
        reply = await ask(server, assignment)
        assert isinstance(reply, Ack) and reply.job_id == assignment.job_id
        commitment = await wait_for(harness.reporter, Commitment, assignment.job_id)
        assert isinstance(commitment, Commitment)
        commitment.verify(DOMAIN)
        expected = expected_outputs_cid(harness.tmp, 42)
        record = harness.jobs.load(assignment.job_id)
        assert record is not None and record.phase is Phase.COMMITTED
        assert record.result_cid == expected and record.salt is not None
        assert commitment.commit_hash == eip712.commit_hash(result_digest(expected), record.salt)
        # Commit before publishing: nothing of the outputs is in the store yet.
        assert not await harness.store.has(expected)
        logs = [m for m in harness.reporter.sent if isinstance(m, LogChunk)]
        assert logs and b"done" in b"".join(m.data for m in logs)

        request = RevealRequest(
            job_id=assignment.job_id,
            provider=PROVIDER.address,
            coordinator=COORDINATOR.address,
            reveal_deadline=assignment.reveal_deadline,
        )
        reveal = await ask(server, request)
        assert isinstance(reveal, Reveal)
        reveal.verify(DOMAIN)
        assert reveal.matches(commitment) and reveal.result_cid == expected
        fetched = await harness.store.get(expected, harness.tmp / "fetched")
        assert (fetched / "answer.txt").read_text() == "seed=42\n"
        loaded = harness.jobs.load(assignment.job_id)
        assert loaded is not None and loaded.phase is Phase.REVEALED
        # Revealed: the run dir is gone, the record stays, and asking again gets the same.
        assert not harness.jobs.run_dir(assignment.job_id).exists()
        again = await ask(server, request)
        assert isinstance(again, Reveal) and again == reveal


async def test_logs_stream_while_the_job_runs(harness: Harness) -> None:
    assignment = await harness.assignment(CHATTY_JOB)
    done = harness.jobs.run_dir(assignment.job_id) / "outputs" / "done"
    before_exit: list[LogChunk] = []

    class Watching(FakeReporter):
        async def send(self, body: Message) -> None:
            if isinstance(body, LogChunk) and not done.exists():
                before_exit.append(body)
            await super().send(body)

    harness.reporter = Watching()
    async with harness.server() as server:
        assert isinstance(await ask(server, assignment), Ack)
        await wait_for(harness.reporter, Commitment, assignment.job_id)
    chunks = [m for m in harness.reporter.of(LogChunk) if isinstance(m, LogChunk)]
    assert len(before_exit) > 1 and all(not c.final for c in before_exit)
    assert b"".join(c.data for c in chunks) == b"".join(b"progress %d\n" % i for i in range(12))
    assert [c.offset for c in chunks] == [
        sum(len(c.data) for c in chunks[:i]) for i in range(len(chunks))
    ]
    assert chunks[-1].final


async def test_failing_job_reports_and_server_keeps_serving(harness: Harness) -> None:
    failing = await harness.assignment(FAILING_JOB)
    good = await harness.assignment(GOOD_JOB)
    async with harness.server() as server:
        assert isinstance(await ask(server, failing), Ack)
        report = await wait_for(harness.reporter, FailureReport, failing.job_id)
        assert isinstance(report, FailureReport)
        assert report.kind is FailureKind.NONZERO_EXIT and report.exit_code == 3
        assert not harness.reporter.of(Commitment)
        assert isinstance(await ask(server, good), Ack)
        assert isinstance(await wait_for(harness.reporter, Commitment, good.job_id), Commitment)
    record = harness.jobs.load(failing.job_id)
    assert record is not None and record.phase is Phase.FAILED
    assert not harness.jobs.run_dir(failing.job_id).exists()
    assert harness.jobs.run_dir(good.job_id).is_dir()  # committed, not yet revealed
    value = harness.metrics.registry.get_sample_value
    assert value("gpumarket_provider_jobs_total", {"outcome": "nonzero_exit"}) == 1
    assert value("gpumarket_provider_jobs_total", {"outcome": "ok"}) == 1
    assert value("gpumarket_provider_job_duration_seconds_count", {"outcome": "ok"}) == 1


def test_every_failed_outcome_has_its_own_failure_kind() -> None:
    failed = [o for o in Outcome if o is not Outcome.OK]
    assert sorted(_OUTCOME_KIND) == sorted(failed)
    assert all(_OUTCOME_KIND[o].value == o.value for o in failed)


async def test_escaping_output_link_is_reported_as_refused(harness: Harness) -> None:
    assignment = await harness.assignment(ESCAPING_JOB)
    async with harness.server() as server:
        assert isinstance(await ask(server, assignment), Ack)
        report = await wait_for(harness.reporter, FailureReport, assignment.job_id)
    assert isinstance(report, FailureReport)
    assert report.kind is FailureKind.OUTPUT_REFUSED and "passwd" in report.detail
    assert not harness.reporter.of(Commitment)


async def test_bad_input_cid_is_a_failure_report(harness: Harness) -> None:
    assignment = await harness.assignment(GOOD_JOB)
    other = await harness.store.add_bytes(b"not the code the spec names")
    tampered = assignment.model_copy(update={"input_cids": {"code": other}})
    async with harness.server() as server:
        assert isinstance(await ask(server, tampered), Ack)
        report = await wait_for(harness.reporter, FailureReport, assignment.job_id)
        assert isinstance(report, FailureReport) and report.kind is FailureKind.BAD_INPUT


async def test_refuses_assignments_the_chain_does_not_back(harness: Harness) -> None:
    assignment = await harness.assignment(GOOD_JOB)
    unknown = await harness.assignment(GOOD_JOB, on_chain=False)
    # On chain, but this provider is not in its assignment.
    harness.chain.add_job(unknown.job_id, COORDINATOR.address, [STRANGER.address])
    async with harness.server() as server:
        forged = await ask(
            server,
            assignment.model_copy(update={"coordinator": STRANGER.address}),
            signer=STRANGER,
        )
        assert isinstance(forged, ErrorReply) and forged.code is ErrorCode.BAD_SIGNATURE
        not_ours = await ask(server, unknown)
        assert isinstance(not_ours, ErrorReply) and not_ours.code is ErrorCode.NOT_ASSIGNED
        wrong_price = await ask(server, assignment.model_copy(update={"price": Wei(PRICE + 1)}))
        assert isinstance(wrong_price, ErrorReply) and wrong_price.code is ErrorCode.NOT_ASSIGNED
    assert harness.jobs.all() == []


async def test_restarted_provider_reveals_from_its_record(harness: Harness) -> None:
    assignment = await harness.assignment(GOOD_JOB)
    async with harness.server() as server:
        await ask(server, assignment)
        commitment = await wait_for(harness.reporter, Commitment, assignment.job_id)
    request = RevealRequest(
        job_id=assignment.job_id,
        provider=PROVIDER.address,
        coordinator=COORDINATOR.address,
        reveal_deadline=assignment.reveal_deadline,
    )
    async with harness.server() as restarted:  # a new worker over the same records
        reveal = await ask(restarted, request)
        assert isinstance(reveal, Reveal) and isinstance(commitment, Commitment)
        assert reveal.matches(commitment)
        stranger = await ask(
            restarted, request.model_copy(update={"coordinator": STRANGER.address}), STRANGER
        )
        assert isinstance(stranger, ErrorReply) and stranger.code is ErrorCode.BAD_SIGNATURE


async def test_reveal_refused_when_outputs_changed(harness: Harness) -> None:
    assignment = await harness.assignment(GOOD_JOB)
    async with harness.server() as server:
        await ask(server, assignment)
        await wait_for(harness.reporter, Commitment, assignment.job_id)
        answer = harness.jobs.run_dir(assignment.job_id) / "outputs" / "answer.txt"
        answer.write_text("tampered\n")
        request = RevealRequest(
            job_id=assignment.job_id,
            provider=PROVIDER.address,
            coordinator=COORDINATOR.address,
            reveal_deadline=assignment.reveal_deadline,
        )
        reply = await ask(server, request)
        assert isinstance(reply, ErrorReply) and reply.code is ErrorCode.INTERNAL
        report = await wait_for(harness.reporter, FailureReport, assignment.job_id)
        assert isinstance(report, FailureReport)


async def test_cancel_stops_a_running_job(harness: Harness) -> None:
    slow = await harness.assignment("import time\ntime.sleep(60)\n")
    async with harness.server() as server:
        await ask(server, slow)
        with trio.fail_after(30):
            while harness.jobs.load(slow.job_id).phase is not Phase.RUNNING:  # type: ignore[union-attr]
                await trio.sleep(0.05)
        await trio.sleep(0.5)
        cancel = Cancel(
            job_id=slow.job_id,
            provider=PROVIDER.address,
            coordinator=COORDINATOR.address,
            reason="replaced",
        )
        assert isinstance(await ask(server, cancel), Ack)
        with trio.fail_after(30):
            while server.active:
                await trio.sleep(0.05)
    record = harness.jobs.load(slow.job_id)
    assert record is not None and record.phase is Phase.CANCELLED
    assert not harness.jobs.run_dir(slow.job_id).exists()


async def test_restart_removes_run_dirs_left_by_finished_jobs(harness: Harness) -> None:
    failing = await harness.assignment(FAILING_JOB)
    good = await harness.assignment(GOOD_JOB)
    async with harness.server() as server:
        await ask(server, failing)
        await ask(server, good)
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
