"""Make the fine-tuning example's inputs here: a base language model (a small byte-level
transformer trained briefly on seeded text) and a dataset in a new style to adapt it to.

    python examples/fine-tuning/prepare.py          # data/ for job.yaml (CPU)
    python examples/fine-tuning/prepare.py --gpu    # data-gpu/ for job-gpu.yaml

The base model is an input like any other: upload it once (`job submit` prints its CID)
and name it by `cid:` in later specs, so providers fetch it once and verify it on every use.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep the uploaded folders free of caches
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tinylm"))

from corpus import questions  # noqa: E402
from preparing import CPU, GPU_DECODER, options, output, pretrained, write_lines  # noqa: E402
from tinylm import save  # noqa: E402

SIZES = {"cpu": (CPU, 100, 256), "gpu": (GPU_DECODER, 2000, 100_000)}
"""Base model, its training steps, dataset lines."""


def main() -> None:
    args = options(__doc__, seed=9)
    cfg, steps, lines = SIZES["gpu" if args.gpu else "cpu"]
    out = output(HERE, args.gpu)
    base, losses = pretrained(cfg, args.steps or steps, args.seed)
    save(base, out / "base")
    write_lines(out / "dataset" / "train.txt", questions(lines, args.seed))
    print(f"wrote {out}: base model loss {losses[-1]:.3f}, {lines} training lines")


if __name__ == "__main__":
    main()
