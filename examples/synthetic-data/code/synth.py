"""Seeded synthetic text data: --rows records sampled from the model input (temperature
sampling from the job's seed, so every honest provider writes the same bytes), one topic
per record in turn, written as --shards JSON Lines files plus a manifest."""

import argparse
import hashlib
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
parser.add_argument("--rows", type=int, default=64)
parser.add_argument("--shards", type=int, default=2)
parser.add_argument("--tokens", type=int, default=40, help="tokens sampled per record")
parser.add_argument("--temperature", type=float, default=0.8)
parser.add_argument("--batch-size", type=int, default=32)
args = parser.parse_args()
if not 0 < args.shards <= args.rows:
    sys.exit("--shards must lie between 1 and --rows")

seed = int(os.environ.get("GPUMARKET_SEED", "0"))
device = "cuda" if torch.cuda.is_available() else "cpu"
model = load(Decoder, inputs / "model", device)
topics = (inputs / "topics" / "topics.txt").read_text().split()
gen = torch.Generator(device=device).manual_seed(seed)
records = []
start = time.perf_counter()
for first in range(0, args.rows, args.batch_size):
    rows = range(first, min(first + args.batch_size, args.rows))
    topic = topics[first // args.batch_size % len(topics)]  # one topic per batch: equal lengths
    prompt = torch.tensor([encode(f"About {topic}:", 32)] * len(rows), device=device)
    sampled = model.generate(prompt, args.tokens, generator=gen, temperature=args.temperature)
    for row, ids in zip(rows, sampled.cpu().tolist()):
        records.append({"id": row, "topic": topic, "text": decode(ids).strip()})
seconds = time.perf_counter() - start

manifest = {"rows": args.rows, "seed": seed, "shards": []}
per_shard = -(-args.rows // args.shards)
for shard in range(args.shards):
    part = records[shard * per_shard : (shard + 1) * per_shard]
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in part).encode()
    name = f"data-{shard:05d}-of-{args.shards:05d}.jsonl"
    (out / name).write_bytes(data)
    manifest["shards"].append(
        {"file": name, "rows": len(part), "sha256": hashlib.sha256(data).hexdigest()}
    )
(out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
print(f"{args.rows} records in {args.shards} shards on {device} in {seconds:.3f} s: "
      f"{args.rows * args.tokens / seconds:.1f} tokens/s")
