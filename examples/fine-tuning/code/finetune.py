"""LoRA fine-tuning: adapters on the attention query and value projections of the base
model input, trained for --steps on the dataset input (the base stays frozen). Writes the
adapter (one .npy per tensor), the loss curve, and a sample completion; reports steps per
second in the log."""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

inputs = Path(os.environ.get("GPUMARKET_INPUT_DIR", "inputs"))
out = Path(os.environ.get("GPUMARKET_OUTPUT_DIR", "outputs"))
sys.path.insert(0, str(inputs / "tinylm"))
from tinylm import Decoder, add_lora, decode, encode, load, train  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--rank", type=int, default=4)
parser.add_argument("--lr", type=float, default=1e-2)
parser.add_argument("--batch-size", type=int, default=16)
args = parser.parse_args()

seed = int(os.environ.get("GPUMARKET_SEED", "0"))
device = "cuda" if torch.cuda.is_available() else "cpu"
model = load(Decoder, inputs / "base", device)
torch.manual_seed(seed)  # the adapters' initial A matrices come from the job's seed
adapters = add_lora(model, args.rank)
model.to(device)
texts = (inputs / "dataset" / "train.txt").read_text().splitlines()
start = time.perf_counter()
losses = train(model, texts, args.steps, lr=args.lr, batch_size=args.batch_size, seed=seed,
               params=list(adapters.values()), log_every=10)
if device == "cuda":
    torch.cuda.synchronize()
seconds = time.perf_counter() - start

folder = out / "adapter"
folder.mkdir()
for name, tensor in adapters.items():
    np.save(folder / f"{name}.npy", tensor.detach().float().cpu().numpy())
(out / "losses.json").write_text(json.dumps(losses) + "\n")
prompt = torch.tensor([encode("Q: what does the market do? A:", 64)], device=device)
sample = decode(model.generate(prompt, 24)[0].tolist())
(out / "sample.txt").write_text(sample + "\n")
print(f"{args.steps} steps on {device} in {seconds:.3f} s: {args.steps / seconds:.2f} steps/s; "
      f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; sample: {sample!r}")
