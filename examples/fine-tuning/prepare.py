"""Make the fine-tuning example's inputs here: a base language model (a small byte-level
transformer trained briefly on seeded text) and a dataset in a new style to adapt it to.

    python examples/fine-tuning/prepare.py          # data/ for job.yaml (CPU)
    python examples/fine-tuning/prepare.py --gpu    # data-gpu/ for job-gpu.yaml

The base model is an input like any other: upload it once (`job submit` prints its CID)
and name it by `cid:` in later specs, so providers fetch it once and verify it on every use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep the uploaded folders free of caches
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tinylm"))

from corpus import questions, sentences  # noqa: E402
from tinylm import Config, Decoder, save, seeded, train  # noqa: E402

SIZES = {  # base model, its training steps, dataset lines
    "cpu": (Config(d_model=64, n_layers=2, n_heads=4, max_len=96), 100, 256),
    "gpu": (Config(d_model=512, n_layers=8, n_heads=8, max_len=256), 2000, 100_000),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the larger inputs of job-gpu.yaml")
    parser.add_argument("--steps", type=int, help="base training steps (default: by size)")
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    cfg, steps, lines = SIZES["gpu" if args.gpu else "cpu"]
    out = HERE / ("data-gpu" if args.gpu else "data")
    base = seeded(Decoder, cfg, args.seed)
    losses = train(base, sentences(4096, args.seed), args.steps or steps, log_every=50)
    save(base, out / "base")
    (out / "dataset").mkdir(parents=True, exist_ok=True)
    (out / "dataset" / "train.txt").write_text("\n".join(questions(lines, args.seed)) + "\n")
    print(f"wrote {out}: base model loss {losses[-1]:.3f}, {lines} training lines")


if __name__ == "__main__":
    main()
