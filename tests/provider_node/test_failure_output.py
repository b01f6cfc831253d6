"""The canonical failure output: fixed bytes, one CID for every run that failed the same
way, committed like a result; failures that are not the job's fault are only reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.failure_output import failure_class_of, failure_output_cid
from protocol.messages import Ack, Commitment, FailureKind, FailureReport, Reveal
from provider_node.failure_output import (
    FAILURE_FILE,
    ExitClass,
    exit_class_of,
    failure_bytes,
    write_failure_output,
)
from provider_node.jobstore import LocalPhase
from provider_node.workdir import outputs_cid
from tests.provider_node.jobharness import Harness, ask, wait_for

pytestmark = pytest.mark.timeout(120)

# Fails after writing outputs and logs that differ on every run.
MESSY_FAILURE = """
import os, pathlib, sys, time
out = pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"])
(out / "partial.bin").write_bytes(os.urandom(64))
(out / "when.txt").write_text(str(time.time()))
print("failing at", time.time())
sys.exit(2)
"""

SLOW = "import time\ntime.sleep(30)\n"


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness.create(tmp_path, "failure-output-test")


def test_failure_bytes_are_fixed() -> None:
    assert failure_bytes(ExitClass.TIMEOUT) == b'{"exit_class":"timeout"}'
    assert failure_bytes(ExitClass.OOM) == b'{"exit_class":"oom"}'
    assert failure_bytes(ExitClass.ERROR) == b'{"exit_class":"error"}'


def test_same_failure_gives_the_same_cid_whatever_was_left(tmp_path: Path) -> None:
    cids = []
    for i, junk in enumerate([b"", b"partial output", b"x" * 5000]):
        run = tmp_path / f"run{i}"
        (run / "outputs" / "sub").mkdir(parents=True)
        if junk:
            (run / "outputs" / "sub" / "left.bin").write_bytes(junk)
        cids.append(write_failure_output(run, ExitClass.OOM))
        assert sorted(p.name for p in (run / "outputs").iterdir()) == [FAILURE_FILE]
        assert (run / "outputs" / FAILURE_FILE).read_bytes() == failure_bytes(ExitClass.OOM)
    assert len(set(cids)) == 1
    assert write_failure_output(tmp_path / "other", ExitClass.TIMEOUT) != cids[0]
    # the requester's side recognises exactly these CIDs, computed without any files
    assert cids[0] == failure_output_cid(ExitClass.OOM)
    assert failure_class_of(cids[0]) is ExitClass.OOM
    assert failure_class_of(failure_output_cid(ExitClass.TIMEOUT)) is ExitClass.TIMEOUT
    (tmp_path / "real" / "outputs").mkdir(parents=True)
    (tmp_path / "real" / "outputs" / FAILURE_FILE).write_bytes(b'{"exit_class":"oom"} ')
    assert failure_class_of(outputs_cid(tmp_path / "real")) is None
    assert failure_class_of("not a cid") is None and failure_class_of(None) is None


@pytest.mark.parametrize(
    ("kind", "full", "expected"),
    [
        (FailureKind.TIMEOUT, True, ExitClass.TIMEOUT),
        (FailureKind.TIMEOUT, False, None),  # cut short by this provider: not the job's fault
        (FailureKind.OOM, True, ExitClass.OOM),
        (FailureKind.NONZERO_EXIT, True, ExitClass.ERROR),
        (FailureKind.OUTPUT_REFUSED, True, ExitClass.ERROR),
        (FailureKind.SANDBOX_ERROR, True, None),
        (FailureKind.KILLED, True, None),
        (FailureKind.BAD_INPUT, True, None),
        (FailureKind.PIDS_LIMIT, True, None),
        (FailureKind.OUTPUT_TOO_LARGE, True, None),
    ],
)
def test_which_failures_are_the_jobs_own(
    kind: FailureKind, full: bool, expected: ExitClass | None
) -> None:
    assert exit_class_of(kind, full_timeout=full) is expected


async def test_two_runs_of_a_failing_job_commit_the_same_result(harness: Harness) -> None:
    first = await harness.assignment(MESSY_FAILURE)
    second = await harness.assignment(MESSY_FAILURE)
    async with harness.server() as server:
        for assignment in (first, second):
            assert isinstance(await ask(harness, server, assignment), Ack)
            await wait_for(harness.reporter, FailureReport, assignment.job_id)
        records = [harness.jobs.load(a.job_id) for a in (first, second)]
        expected = write_failure_output(harness.tmp / "expected", ExitClass.ERROR)
        for record in records:
            assert record is not None and record.phase is LocalPhase.COMMITTED
            assert record.result_cid == expected and record.exit_class == "error"
            assert record.runtime_ms is not None and record.runtime_ms > 0
        # Revealed like a result: the failure output goes to IPFS under that CID.
        reveal = await ask(harness, server, harness.reveal_request(first))
        assert isinstance(reveal, Reveal) and reveal.result_cid == expected
        fetched = await harness.store.get(expected, harness.tmp / "fetched")
        assert (fetched / FAILURE_FILE).read_bytes() == failure_bytes(ExitClass.ERROR)


async def test_own_timeout_is_committed_a_cut_one_is_not(harness: Harness) -> None:
    own = await harness.assignment(SLOW, timeout="1s")
    cut = await harness.assignment(SLOW, timeout="60s")
    short = harness.worker(max_timeout_s=1.0)  # this provider grants 1 s whatever is asked
    async with harness.server(worker=short) as server:
        for assignment in (own, cut):
            assert isinstance(await ask(harness, server, assignment), Ack)
            report = await wait_for(harness.reporter, FailureReport, assignment.job_id)
            assert isinstance(report, FailureReport) and report.kind is FailureKind.TIMEOUT
    timed_out = harness.jobs.load(own.job_id)
    assert timed_out is not None and timed_out.exit_class == "timeout"
    assert timed_out.phase is LocalPhase.COMMITTED
    commitments = [c for c in harness.reporter.sent if isinstance(c, Commitment)]
    assert [c.job_id for c in commitments] == [own.job_id]
    unfair = harness.jobs.load(cut.job_id)
    assert unfair is not None and unfair.phase is LocalPhase.FAILED and unfair.commit_hash is None
