"""The workload examples (embeddings, batch LLM inference, LoRA fine-tuning, synthetic
data) on the devnet: prepared as a user would (``prepare.py``), submitted through the CLI,
settled, and their verified outputs checked against a computation made here, by another
route where there is one (one batch instead of many; full forward passes instead of the
key/value cache)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.e2e.checks import assert_paid_exactly
from tests.e2e.market import REPO, Market
from tests.e2e.test_honest import run_locally

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"


@contextmanager
def tinylm(folder: Path) -> Iterator[Any]:
    """The examples' model module, imported from ``folder`` for this block only."""
    sys.path.insert(0, str(folder))
    try:
        import tinylm as module

        yield module
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("tinylm", None)


def prepare(name: str, tmp: Path) -> Path:
    """A copy of the example with its inputs made by its ``prepare.py`` (few training
    steps: the checks need a model, not a good one); the copy's folder."""
    root = tmp / "examples"
    shutil.copytree(EXAMPLES / "tinylm", root / "tinylm")
    shutil.copytree(EXAMPLES / name, root / name)
    args = [] if name == "embeddings" else ["--steps", "20"]
    subprocess.run(
        [sys.executable, str(root / name / "prepare.py"), *args],
        check=True,
        timeout=600,
        capture_output=True,
    )
    return root / name


def inputs_of(example: Path, **named: str) -> Path:
    """An ``inputs/`` folder as the sandbox lays it out: ``name -> path in the example``."""
    inputs = example.parent / "inputs"
    inputs.mkdir()
    (inputs / "tinylm").symlink_to(example.parent / "tinylm")
    for name, path in named.items():
        (inputs / name).symlink_to(example / path)
    return inputs


def check_embeddings(result: Path, seed: int, example: Path) -> None:
    texts = (example / "data" / "corpus" / "corpus.txt").read_text().splitlines()
    got = np.load(result / "embeddings.npy", allow_pickle=False)
    assert got.shape == (len(texts), 64) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    with tinylm(example.parent / "tinylm") as lm, torch.no_grad():
        encoder = lm.load(lm.Encoder, example / "data" / "encoder")
        want = encoder.embed(texts).numpy()  # the whole corpus as one batch
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def check_llm_inference(result: Path, seed: int, example: Path) -> None:
    rows = [json.loads(line) for line in (result / "completions.jsonl").read_text().splitlines()]
    prompts = (example / "data" / "prompts" / "prompts.txt").read_text().splitlines()
    assert [r["prompt"] for r in rows] == prompts
    with tinylm(example.parent / "tinylm") as lm, torch.no_grad():
        model = lm.load(lm.Decoder, example / "data" / "model")
        for row in rows:
            ids = lm.encode(row["prompt"], model.cfg.max_len // 2)
            start = len(ids)
            for _ in range(24):  # greedy, the whole sequence every step: no cache
                logits, _ = model(torch.tensor([ids]))
                ids.append(int(logits[0, -1].argmax()))
            assert row["tokens"] == ids[start:], row
            assert row["text"] == lm.decode(ids[start:])


def check_fine_tuning(result: Path, seed: int, example: Path) -> None:
    inputs = inputs_of(example, base="data/base", dataset="data/dataset")
    ref = example.parent / "reference"
    run_locally(example / "code" / "finetune.py", seed, ref, "--steps", "30", inputs=inputs)
    losses = json.loads((result / "losses.json").read_text())
    assert losses == json.loads((ref / "losses.json").read_text())
    assert len(losses) == 30 and losses[-1] < losses[0]  # the adapter learned something
    names = sorted(p.name for p in (result / "adapter").iterdir())
    assert names == sorted(p.name for p in (ref / "adapter").iterdir())
    assert len(names) == 8  # A and B for the query and value projections of 2 layers
    for name in names:
        got = np.load(result / "adapter" / name, allow_pickle=False)
        want = np.load(ref / "adapter" / name, allow_pickle=False)
        np.testing.assert_array_equal(got, want)


def check_synthetic_data(result: Path, seed: int, example: Path) -> None:
    manifest = json.loads((result / "manifest.json").read_text())
    assert manifest["rows"] == 64 and manifest["seed"] == seed and len(manifest["shards"]) == 2
    records = []
    for shard in manifest["shards"]:
        data = (result / shard["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
        part = [json.loads(line) for line in data.decode().splitlines()]
        assert len(part) == shard["rows"]
        records += part
    assert [r["id"] for r in records] == list(range(64))
    inputs = inputs_of(example, model="data/model", topics="data/topics")
    ref = example.parent / "reference"
    run_locally(example / "code" / "synth.py", seed, ref, "--rows", "64", inputs=inputs)
    for shard in manifest["shards"]:
        assert (result / shard["file"]).read_bytes() == (ref / shard["file"]).read_bytes()


Check = Callable[[Path, int, Path], None]
WORKLOADS: dict[str, tuple[Check, str]] = {
    "embeddings": (check_embeddings, "0.75"),
    "llm-inference": (check_llm_inference, "0.75"),
    "fine-tuning": (check_fine_tuning, "1.00"),
    "synthetic-data": (check_synthetic_data, "0.75"),
}


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workload_settles_with_a_result_recomputed_here(
    market: Market, name: str, tmp_path: Path
) -> None:
    check, cap = WORKLOADS[name]
    example = prepare(name, tmp_path)
    requester = market.new_requester()
    everyone = [requester.address, market.coordinator_address]
    everyone += [a.address for a in market.state.accounts if a.role == "provider"]
    before = market.ledger(everyone)

    submitted = market.submit(example / "job.yaml", requester)
    job = submitted["job"]
    assert job["state"] == "settled", job
    assert float(submitted["escrow"]) == pytest.approx(4 * float(cap) + 0.1)
    fetched = market.cli_json("job", "result", job["job_id"], "-o", str(tmp_path / "result"))
    assert fetched["result_cid"] == job["result_cid"]
    check(Path(fetched["path"]), market.seed(job["job_id"]), example)

    paid = [p for p in job["providers"] if p["outcome"] == "paid"]
    assert len({p["address"] for p in paid}) == 2
    assert_paid_exactly(market, job, before, market.ledger(everyone), escrow=submitted["escrow"])
