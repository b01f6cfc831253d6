"""Deterministic training steps of a small MLP; saves a checkpoint and the loss curve."""

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=20)
args = parser.parse_args()

seed = int(os.environ.get("GPUMARKET_SEED", "0"))
out = Path(os.environ.get("GPUMARKET_OUTPUT_DIR", "outputs"))
torch.manual_seed(seed)
torch.use_deterministic_algorithms(True)

x = torch.randn(512, 16)
true_w = torch.randn(16, 1)
y = torch.tanh(x @ true_w) + 0.05 * torch.randn(512, 1)
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
losses = []
for step in range(args.steps):
    batch = slice((step * 64) % 512, (step * 64) % 512 + 64)
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x[batch]), y[batch])
    loss.backward()
    opt.step()
    losses.append(round(float(loss), 9))
    print(f"step {step:3d} loss {losses[-1]:.6f}")

ckpt = out / "checkpoint"
ckpt.mkdir()
for name, tensor in model.state_dict().items():
    np.save(ckpt / f"{name}.npy", tensor.detach().numpy())
(out / "losses.json").write_text(json.dumps(losses) + "\n")
