"""Embed every line of the corpus input with the encoder input, in batches; write one
unit vector per line (embeddings.npy) and report embeddings per second in the log."""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

inputs = Path(os.environ.get("GPUMARKET_INPUT_DIR", "inputs"))
out = Path(os.environ.get("GPUMARKET_OUTPUT_DIR", "outputs"))
sys.path.insert(0, str(inputs / "tinylm"))
from tinylm import Encoder, load  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--batch-size", type=int, default=64)
args = parser.parse_args()

device = "cuda" if torch.cuda.is_available() else "cpu"
model = load(Encoder, inputs / "model", device)
texts = (inputs / "corpus" / "corpus.txt").read_text().splitlines()
vectors = []
start = time.perf_counter()
with torch.no_grad():
    for i in range(0, len(texts), args.batch_size):
        vectors.append(model.embed(texts[i : i + args.batch_size], device).float().cpu())
if device == "cuda":
    torch.cuda.synchronize()
seconds = time.perf_counter() - start
embeddings = torch.cat(vectors).numpy().astype(np.float32)
np.save(out / "embeddings.npy", embeddings)
print(f"embedded {len(texts)} lines ({embeddings.shape[1]} dims) on {device} "
      f"in {seconds:.3f} s: {len(texts) / seconds:.1f} embeddings/s")
