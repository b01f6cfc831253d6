"""Greedy completions for every prompt of the prompts input, batched with a key/value
cache (each step feeds one new token per prompt); writes completions.jsonl and reports
tokens per second in the log."""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

inputs = Path(os.environ.get("GPUMARKET_INPUT_DIR", "inputs"))
out = Path(os.environ.get("GPUMARKET_OUTPUT_DIR", "outputs"))
sys.path.insert(0, str(inputs / "tinylm"))
from tinylm import Decoder, decode, encode, load  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--max-new-tokens", type=int, default=32)
args = parser.parse_args()

device = "cuda" if torch.cuda.is_available() else "cpu"
model = load(Decoder, inputs / "model", device)
prompts = (inputs / "prompts" / "prompts.txt").read_text().splitlines()
encoded = [encode(p, model.cfg.max_len // 2) for p in prompts]
# Prompts of one length batch together, so no padding enters the attention.
by_length: dict[int, list[int]] = {}
for index, ids in enumerate(encoded):
    by_length.setdefault(len(ids), []).append(index)
completions: dict[int, list[int]] = {}
generated = 0
start = time.perf_counter()
for length in sorted(by_length):
    group = by_length[length]
    for i in range(0, len(group), args.batch_size):
        chunk = group[i : i + args.batch_size]
        batch = torch.tensor([encoded[j] for j in chunk], device=device)
        new = model.generate(batch, args.max_new_tokens).cpu().tolist()
        generated += sum(len(row) for row in new)
        for j, row in zip(chunk, new):
            completions[j] = row
if device == "cuda":
    torch.cuda.synchronize()
seconds = time.perf_counter() - start
with (out / "completions.jsonl").open("w") as f:
    for index, prompt in enumerate(prompts):
        ids = completions[index]
        f.write(json.dumps({"index": index, "prompt": prompt, "tokens": ids,
                            "text": decode(ids)}) + "\n")
print(f"{len(prompts)} prompts, {generated} tokens on {device} in {seconds:.3f} s: "
      f"{generated / seconds:.1f} tokens/s")
