"""Make the embeddings example's inputs here: a seeded encoder and a text corpus.

    python examples/embeddings/prepare.py          # data/ for job.yaml (CPU, seconds)
    python examples/embeddings/prepare.py --gpu    # data-gpu/ for job-gpu.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep the uploaded folders free of caches
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tinylm"))

from corpus import sentences  # noqa: E402
from tinylm import Config, Encoder, save, seeded  # noqa: E402

SIZES = {
    "cpu": (Config(d_model=64, n_layers=2, n_heads=4, max_len=96), 512),
    "gpu": (Config(d_model=512, n_layers=6, n_heads=8, max_len=128), 200_000),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the larger inputs of job-gpu.yaml")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    size = "gpu" if args.gpu else "cpu"
    cfg, lines = SIZES[size]
    out = HERE / ("data-gpu" if args.gpu else "data")
    save(seeded(Encoder, cfg, args.seed), out / "encoder")
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    (out / "corpus" / "corpus.txt").write_text("\n".join(sentences(lines, args.seed)) + "\n")
    print(f"wrote {out}: encoder d_model={cfg.d_model} layers={cfg.n_layers}, {lines} lines")


if __name__ == "__main__":
    main()
