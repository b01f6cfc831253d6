"""Make the batch LLM inference example's inputs here: a small byte-level language model,
trained for a few steps on seeded text so its completions look like words, and a prompt
file.

    python examples/llm-inference/prepare.py          # data/ for job.yaml (CPU)
    python examples/llm-inference/prepare.py --gpu    # data-gpu/ for job-gpu.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep the uploaded folders free of caches
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tinylm"))

from corpus import SUBJECTS  # noqa: E402
from preparing import CPU, GPU_DECODER, options, output, pretrained, write_lines  # noqa: E402
from tinylm import save  # noqa: E402

SIZES = {"cpu": (CPU, 150, 32), "gpu": (GPU_DECODER, 2000, 4096)}
"""Model, training steps, prompts."""


def main() -> None:
    args = options(__doc__, seed=5)
    cfg, steps, prompts = SIZES["gpu" if args.gpu else "cpu"]
    out = output(HERE, args.gpu)
    model, losses = pretrained(cfg, args.steps or steps, args.seed)
    save(model, out / "model")
    lines = [SUBJECTS[i % len(SUBJECTS)].capitalize() for i in range(prompts)]
    write_lines(out / "prompts" / "prompts.txt", lines)
    print(f"wrote {out}: final loss {losses[-1]:.3f}, {prompts} prompts")


if __name__ == "__main__":
    main()
