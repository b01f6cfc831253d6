"""Make the synthetic data example's inputs here: a small byte-level language model
(trained briefly on seeded text) to sample from, and the topics to write about.

    python examples/synthetic-data/prepare.py          # data/ for job.yaml (CPU)
    python examples/synthetic-data/prepare.py --gpu    # data-gpu/ for job-gpu.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep the uploaded folders free of caches
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tinylm"))

from corpus import TOPICS  # noqa: E402
from preparing import CPU, GPU_DECODER, options, output, pretrained, write_lines  # noqa: E402
from tinylm import save  # noqa: E402

SIZES = {"cpu": (CPU, 150), "gpu": (GPU_DECODER, 2000)}
"""Model, training steps."""


def main() -> None:
    args = options(__doc__, seed=13)
    cfg, steps = SIZES["gpu" if args.gpu else "cpu"]
    out = output(HERE, args.gpu)
    model, losses = pretrained(cfg, args.steps or steps, args.seed)
    save(model, out / "model")
    write_lines(out / "topics" / "topics.txt", TOPICS)
    print(f"wrote {out}: final loss {losses[-1]:.3f}, {len(TOPICS)} topics")


if __name__ == "__main__":
    main()
