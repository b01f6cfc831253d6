"""Seeded matmul: C = A @ B for A, B drawn from the job's seed; writes C and a summary."""

import json
import os
from pathlib import Path

import numpy as np
import torch

seed = int(os.environ.get("GPUMARKET_SEED", "0"))
out = Path(os.environ.get("GPUMARKET_OUTPUT_DIR", "outputs"))
n = 256
gen = torch.Generator().manual_seed(seed)
a = torch.randn(n, n, generator=gen, dtype=torch.float64)
b = torch.randn(n, n, generator=gen, dtype=torch.float64)
c = a @ b
np.save(out / "product.npy", c.numpy())
summary = {"n": n, "seed": seed, "trace": round(float(torch.trace(c)), 9)}
(out / "summary.json").write_text(json.dumps(summary, sort_keys=True) + "\n")
print(f"matmul n={n} seed={seed} trace={summary['trace']}")
