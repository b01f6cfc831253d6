"""A real torch job in bwrap: seeded through the launcher, byte-identical across runs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from provider_node.runtimes import BwrapRuntime, PreparedJob, RunLimits, RunOutcome
from tests.provider_node.conftest import MakeJob

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MATMUL_JOB = """
import os, pathlib
import numpy as np
import torch

assert torch.are_deterministic_algorithms_enabled()
a = torch.randn(128, 96)
b = torch.randn(96, 64)
c = (a @ b).tanh()
out = pathlib.Path(os.environ["GPUMARKET_OUTPUT_DIR"])
np.save(out / "product.npy", c.numpy())
(out / "hash_order.txt").write_text(",".join(sorted({"alpha", "beta", "gamma"}, key=hash)))
print("torch", torch.__version__, "sum", float(c.sum()))
"""

LIMITS = RunLimits(wall_time_s=120, memory_bytes=2 << 30, max_pids=256, max_output_bytes=1 << 20)


def _digest(job: PreparedJob) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(job.outputs_dir.iterdir())
    }


async def test_seeded_matmul_is_byte_identical(make_job: MakeJob) -> None:
    runtime = BwrapRuntime()
    first, second = (make_job(MATMUL_JOB, torch=True, limits=LIMITS, seed=11) for _ in range(2))
    for job in (first, second):
        result = await runtime.run(job)
        assert result.outcome is RunOutcome.OK, result
        print(f"torch job took {result.duration_s:.1f} s")
    assert _digest(first) == _digest(second)
    # The launcher seeded torch with the job's seed: the host reproduces the product.
    torch.manual_seed(11)
    a, b = torch.randn(128, 96), torch.randn(96, 64)
    expected = (a @ b).tanh().numpy()
    product = np.load(first.outputs_dir / "product.npy")
    assert product.dtype == np.float32
    np.testing.assert_array_equal(product, expected)
