"""Jobs that must fail loudly and without costing anyone: an input CID nobody can verify
is refused at submit, before anything is paid; a job that writes a symlink out of its
outputs fails on the providers. Afterwards the same providers take the next job as usual."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from multiformats import CID, multihash

from protocol.ids import to_wei
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


def fails_without_cost(market: Market, requester: Requester, job_spec: Path) -> tuple[str, str]:
    """Submit and follow ``job_spec``; it must fail, pay nobody, and the requester must get
    the whole escrow back after the deadline. Returns the job id and what the requester
    was told (the CLI's error and the job's status)."""
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
    assert view["state"] == "failed", view
    status = market.cli("job", "status", job_id, "--json")
    told += " " + status.stdout

    assert not market.job_events(job_id, "JobSettled")
    after = market.ledger(everyone)
    for address in everyone[1:]:
        assert after.earned[address] == before.earned[address]
        assert after.owed[address] == before.owed[address]
        assert after.stake[address] == before.stake[address]
    # Nothing lost: the escrow comes back whole once the deadline has passed.
    chain = market.chain()
    terms = chain.get_job(bytes.fromhex(job_id[2:])).terms  # type: ignore[arg-type]
    market.increase_time(terms.settle_deadline - chain.now() + 1)
    reclaimed = market.cli("job", "cancel", job_id, *auth)
    assert reclaimed.returncode == 0 and "reclaimed" in reclaimed.stdout, reclaimed.stderr
    final = market.ledger([requester.address])
    assert final.owed[requester.address] - before.owed[requester.address] == terms.escrow
    assert before.tokens[requester.address] - final.tokens[requester.address] == terms.escrow
    return job_id, told


def test_an_output_symlink_escaping_the_work_dir_is_refused(market: Market, tmp_path: Path) -> None:
    requester = market.new_requester()
    _, told = fails_without_cost(market, requester, spec(tmp_path, ESCAPING_JOB))
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
