"""Make the batch LLM inference example's inputs here: a small byte-level language model,
trained for a few steps on seeded text so its completions look like words, and a prompt
file.

    python examples/llm-inference/prepare.py          # data/ for job.yaml (CPU)
    python examples/llm-inference/prepare.py --gpu    # data-gpu/ for job-gpu.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # keep the uploaded folders free of caches
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tinylm"))

from corpus import SUBJECTS, sentences  # noqa: E402
from tinylm import Config, Decoder, save, seeded, train  # noqa: E402

SIZES = {  # model, training steps, prompts
    "cpu": (Config(d_model=64, n_layers=2, n_heads=4, max_len=96), 150, 32),
    "gpu": (Config(d_model=512, n_layers=8, n_heads=8, max_len=256), 2000, 4096),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the larger inputs of job-gpu.yaml")
    parser.add_argument("--steps", type=int, help="training steps (default: by size)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    cfg, steps, prompts = SIZES["gpu" if args.gpu else "cpu"]
    out = HERE / ("data-gpu" if args.gpu else "data")
    model = seeded(Decoder, cfg, args.seed)
    losses = train(model, sentences(4096, args.seed), args.steps or steps, log_every=50)
    save(model, out / "model")
    lines = [SUBJECTS[i % len(SUBJECTS)].capitalize() for i in range(prompts)]
    (out / "prompts").mkdir(parents=True, exist_ok=True)
    (out / "prompts" / "prompts.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}: final loss {losses[-1]:.3f}, {prompts} prompts")


if __name__ == "__main__":
    main()
