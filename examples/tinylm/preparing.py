"""What the examples' ``prepare.py`` scripts share: their options, the folder they write,
a decoder trained briefly on seeded text, and text inputs one item per line."""

from __future__ import annotations

import argparse
from pathlib import Path

from corpus import sentences
from tinylm import Config, Decoder, seeded, train

CPU = Config(d_model=64, n_layers=2, n_heads=4, max_len=96)
"""The model size of the CPU specs (``job.yaml``): seconds on the devnet."""
GPU_DECODER = Config(d_model=512, n_layers=8, n_heads=8, max_len=256)
"""The decoder size of the GPU specs (``job-gpu.yaml``)."""


def options(doc: str, seed: int, *, trains: bool = True) -> argparse.Namespace:
    """``--gpu``, ``--seed`` and, for a script that trains, ``--steps``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the larger inputs of job-gpu.yaml")
    if trains:
        parser.add_argument("--steps", type=int, help="training steps (default: by size)")
    parser.add_argument("--seed", type=int, default=seed)
    return parser.parse_args()


def output(example: Path, gpu: bool) -> Path:
    """Where the inputs go: ``data/`` for ``job.yaml``, ``data-gpu/`` for ``job-gpu.yaml``."""
    return example / ("data-gpu" if gpu else "data")


def pretrained(cfg: Config, steps: int, seed: int) -> tuple[Decoder, list[float]]:
    """A decoder drawn from ``seed`` and trained ``steps`` steps on seeded sentences, so
    what it writes looks like words; and its losses."""
    model = seeded(Decoder, cfg, seed)
    assert isinstance(model, Decoder)
    return model, train(model, sentences(4096, seed), steps, log_every=50)


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
