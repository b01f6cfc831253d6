"""Jobs that must fail loudly: an input CID nobody can verify is refused at submit, before
anything is paid; a job that writes a symlink out of its outputs fails on the providers,
which agree on how it failed and are paid for the time it ran (nothing more). Afterwards the
same providers take the next job as usual."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from multiformats import CID, multihash

from protocol.failure_output import ExitClass, failure_class_of
from protocol.ids import from_wei, parse_job_id, to_wei
from tests.e2e.checks import assert_paid_exactly
from tests.e2e.market import REPO, TERMINAL, Market, Requester

pytestmark = pytest.mark.integration

MATMUL = REPO / "examples" / "matmul"
JOB_ID = re.compile(r"job (0x[0-9a-f]{64})")

ESCAPING_JOB = """\
import os, pathlib
out = pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"])
(out / "ok.txt").write_text("fine\\n")
os.symlink("/etc/passwd", out / "leak")
"""


def spec(directory: Path, main: str, extra_input: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text(main)
    text = (MATMUL / "job.yaml").read_text()
    if extra_input:
        text = text.replace(
            "  - {name: code, path: ./}\n", f"  - {{name: code, path: ./}}\n{extra_input}"
        )
        assert extra_input in text
    (directory / "job.yaml").write_text(text)
    return directory / "job.yaml"


def fails_and_pays_its_runtime(
    market: Market, requester: Requester, job_spec: Path
) -> tuple[str, str]:
    """Submit and follow ``job_spec`` whose own code fails: the requester is told it failed
    and why (exit 1), the providers agreed on the canonical failure output and were paid
    exactly their billed runtime, nobody was slashed, the requester got the rest back.
    Returns the job id and what the requester was told (the CLI's error and job status)."""
    providers = [a.address for a in market.state.accounts if a.role == "provider"]
    everyone = [requester.address, market.coordinator_address, *providers]
    before = market.ledger(everyone)
    auth = ["--account", requester.name, "--password-file", str(market.password_file)]
    done = market.cli("job", "submit", str(job_spec), "--wait", *auth, "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    told = " ".join(done.stderr.split())
    found = JOB_ID.search(told)
    assert found, told
    job_id = found.group(1)
    view = market.wait_job(job_id, lambda v: v["state"] in TERMINAL, timeout=30, what="over")
    assert view["state"] == "settled", view
    assert failure_class_of(view["result_cid"]) is ExitClass.ERROR, view
    status = market.cli("job", "status", job_id, "--json")
    told += " " + status.stdout
    escrow = str(from_wei(market.chain().job_terms(parse_job_id(job_id)).escrow))
    assert_paid_exactly(market, view, before, market.ledger(everyone), escrow=escrow)
    result = market.cli("job", "result", job_id, "-o", str(job_spec.parent / "out"))
    assert result.returncode == 1 and "on every provider" in " ".join(result.stderr.split())
    return job_id, told


def test_an_output_symlink_escaping_the_work_dir_is_refused(market: Market, tmp_path: Path) -> None:
    requester = market.new_requester()
    _, told = fails_and_pays_its_runtime(market, requester, spec(tmp_path, ESCAPING_JOB))
    assert "symlink" in told and "outside" in told, f"the requester was not told why: {told}"


def test_the_providers_take_the_next_job_after_a_failed_one(market: Market) -> None:
    requester = market.new_requester()
    submitted = market.submit(MATMUL / "job.yaml", requester, wait=False)
    view = market.wait_job(
        submitted["job_id"], lambda v: v["state"] in TERMINAL, timeout=90, what="finished"
    )
    assert view["state"] == "settled", view
    assert to_wei(submitted["escrow"]) > 0


def test_an_input_cid_that_cannot_be_verified_is_refused_before_paying(
    market: Market, tmp_path: Path
) -> None:
    # A well-formed CID whose hash (sha3-256) no provider verifies content against.
    cid = CID("base32", 1, "raw", multihash.digest(b"some input", "sha3-256"))
    job_spec = spec(tmp_path, (MATMUL / "main.py").read_text(), f"  - {{name: data, cid: {cid}}}\n")
    requester = market.new_requester()
    before = market.ledger([requester.address])
    auth = ["--account", requester.name, "--password-file", str(market.password_file)]
    done = market.cli("job", "submit", str(job_spec), "--wait", *auth, "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    told = " ".join(done.stderr.split())
    assert "inputs.1.cid" in told and str(cid) in told and "sha3-256" in told, told
    assert not JOB_ID.search(told + done.stdout), "a job was created for a spec that was refused"
    after = market.ledger([requester.address])
    assert after.tokens == before.tokens and after.owed == before.owed
