"""Make the embeddings example's inputs here: a seeded encoder and a text corpus.

python examples/embeddings/prepare.py          # data/ for job.yaml (CPU, seconds)
python examples/embeddings/prepare.py --gpu    # data-gpu/ for job-gpu.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep the uploaded folders free of caches
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tinylm"))

from corpus import sentences  # noqa: E402
from preparing import CPU, options, output, write_lines  # noqa: E402
from tinylm import Config, Encoder, save, seeded  # noqa: E402

SIZES = {
    "cpu": (CPU, 512),
    "gpu": (Config(d_model=512, n_layers=6, n_heads=8, max_len=128), 200_000),
}
"""Encoder, corpus lines."""


def main() -> None:
    args = options(__doc__, seed=11, trains=False)
    cfg, lines = SIZES["gpu" if args.gpu else "cpu"]
    out = output(HERE, args.gpu)
    save(seeded(Encoder, cfg, args.seed), out / "encoder")
    write_lines(out / "corpus" / "corpus.txt", sentences(lines, args.seed))
    print(f"wrote {out}: encoder d_model={cfg.d_model} layers={cfg.n_layers}, {lines} lines")


if __name__ == "__main__":
    main()
