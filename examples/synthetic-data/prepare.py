"""Make the synthetic data example's inputs here: a small byte-level language model
(trained briefly on seeded text) to sample from, and the topics to write about.

    python examples/synthetic-data/prepare.py          # data/ for job.yaml (CPU)
    python examples/synthetic-data/prepare.py --gpu    # data-gpu/ for job-gpu.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep the uploaded folders free of caches
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tinylm"))

from corpus import TOPICS, sentences  # noqa: E402
from tinylm import Config, Decoder, save, seeded, train  # noqa: E402

SIZES = {
    "cpu": (Config(d_model=64, n_layers=2, n_heads=4, max_len=96), 150),
    "gpu": (Config(d_model=512, n_layers=8, n_heads=8, max_len=256), 2000),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the larger inputs of job-gpu.yaml")
    parser.add_argument("--steps", type=int, help="training steps (default: by size)")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    cfg, steps = SIZES["gpu" if args.gpu else "cpu"]
    out = HERE / ("data-gpu" if args.gpu else "data")
    model = seeded(Decoder, cfg, args.seed)
    losses = train(model, sentences(4096, args.seed), args.steps or steps, log_every=50)
    save(model, out / "model")
    (out / "topics").mkdir(parents=True, exist_ok=True)
    (out / "topics" / "topics.txt").write_text("\n".join(TOPICS) + "\n")
    print(f"wrote {out}: final loss {losses[-1]:.3f}, {len(TOPICS)} topics")


if __name__ == "__main__":
    main()
