"""A small byte-level transformer family shared by the workload examples.

Everything is built from a config and a seed (no downloads): an encoder for embeddings and
a decoder-only language model with a key/value cache for generation, plus LoRA adapters
for fine-tuning. Weights travel as job inputs (``.pt`` files of plain tensors, loaded with
``weights_only=True`` so a weights file cannot run code). Tokens are UTF-8 bytes (0-255);
id 256 marks the end of a sequence.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

END = 256
VOCAB = 257


@dataclass(frozen=True)
class Config:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 128

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> Config:
        return cls(**json.loads(path.read_text()))


def encode(text: str, max_len: int) -> list[int]:
    return list(text.encode("utf-8"))[:max_len]


def decode(ids: list[int]) -> str:
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class Attention(nn.Module):
    """Multi-head self-attention; ``cache`` holds the keys and values seen so far."""

    def __init__(self, cfg: Config, causal: bool) -> None:
        super().__init__()
        self.heads, self.causal = cfg.n_heads, causal
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.k = nn.Linear(cfg.d_model, cfg.d_model)
        self.v = nn.Linear(cfg.d_model, cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if self.causal:
            t_new, t_all = q.shape[2], k.shape[2]
            future = torch.ones(t_new, t_all, dtype=torch.bool, device=x.device).triu(
                t_all - t_new + 1
            )
            scores = scores.masked_fill(future, float("-inf"))
        if mask is not None:  # (batch, keys): False keys are padding
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        y = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(x.shape)
        return self.out(y), (k, v)


class Block(nn.Module):
    def __init__(self, cfg: Config, causal: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg, causal)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model),
            nn.GELU(),
            nn.Linear(4 * cfg.d_model, cfg.d_model),
        )

    def forward(
        self,
        x: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attended, cache = self.attn(self.norm1(x), cache, mask)
        x = x + attended
        return x + self.mlp(self.norm2(x)), cache


class Trunk(nn.Module):
    """What both kinds share: byte and position embeddings, the blocks, a final norm."""

    causal: bool

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokens = nn.Embedding(VOCAB, cfg.d_model)
        self.positions = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, self.causal) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def embedded(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token plus position embeddings of ``ids``, positions counted from ``start``."""
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)
        return self.tokens(ids) + self.positions(positions)


class Encoder(Trunk):
    """Texts to unit vectors: mean of the last layer over the real (unpadded) tokens."""

    causal = False

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embedded(ids)
        for block in self.blocks:
            x, _ = block(x, mask=mask)
        x = self.norm(x) * mask[..., None]
        pooled = x.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)
        return F.normalize(pooled, dim=-1)

    def embed(self, texts: list[str], device: torch.device | str = "cpu") -> torch.Tensor:
        rows = [encode(t, self.cfg.max_len) or [END] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), END, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = True
        return self(ids.to(device), mask.to(device))


Cache = list[tuple[torch.Tensor, torch.Tensor]]


class Decoder(Trunk):
    """A causal language model over bytes."""

    causal = True

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.head = nn.Linear(cfg.d_model, VOCAB, bias=False)

    def forward(self, ids: torch.Tensor, cache: Cache | None = None) -> tuple[torch.Tensor, Cache]:
        x = self.embedded(ids, 0 if cache is None else cache[0][0].shape[2])
        new: Cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if cache is None else cache[i])
            new.append(kv)
        return self.head(self.norm(x)), new

    @torch.no_grad()
    def generate(
        self,
        prompts: torch.Tensor,
        new_tokens: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 0.0,
    ) -> torch.Tensor:
        """Continue a batch of equal-length prompts by ``new_tokens`` tokens each, feeding
        only the newest token per step (the cache holds the rest): greedy at temperature 0,
        else sampled with ``generator``."""
        room = self.cfg.max_len - prompts.shape[1]
        logits, cache = self(prompts)
        out = []
        for _ in range(min(new_tokens, room)):
            last = logits[:, -1, :]
            if temperature > 0:
                probs = (last / temperature).softmax(dim=-1)
                token = torch.multinomial(probs, 1, generator=generator)
            else:
                token = last.argmax(dim=-1, keepdim=True)
            out.append(token)
            logits, cache = self(token, cache)
        return torch.cat(out, dim=1) if out else prompts[:, :0]


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update ``B @ A`` (B starts at 0)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.a = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.a.T @ self.b.T) * self.scale


def add_lora(model: Decoder, rank: int, alpha: float = 8.0) -> dict[str, nn.Parameter]:
    """Freeze ``model`` and give every attention query and value projection an adapter;
    returns the adapter parameters by name."""
    for p in model.parameters():
        p.requires_grad_(False)
    for i, block in enumerate(model.blocks):
        attn = block.attn
        attn.q = LoRALinear(attn.q, rank, alpha)
        attn.v = LoRALinear(attn.v, rank, alpha)
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def load(kind: type[nn.Module], folder: Path, device: torch.device | str = "cpu") -> nn.Module:
    """A model saved by :func:`save` (``config.json`` + ``weights.pt``), in eval mode."""
    cfg = Config.load(folder / "config.json")
    model = kind(cfg)
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()


def save(model: Encoder | Decoder, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.cfg.save(folder / "config.json")
    torch.save(model.state_dict(), folder / "weights.pt")


def seeded(kind: type[Encoder] | type[Decoder], cfg: Config, seed: int) -> Encoder | Decoder:
    """A model of ``kind`` with weights drawn from ``seed`` (the same on every machine)."""
    torch.manual_seed(seed)
    return kind(cfg)


def batches(texts: list[str], max_len: int, size: int, seed: int) -> list[torch.Tensor]:
    """Shuffled training batches of token ids (each text ends with END), padded with END."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(texts), generator=gen).tolist()
    out = []
    for start in range(0, len(order) - size + 1, size):
        rows = [encode(texts[i], max_len - 1) + [END] for i in order[start : start + size]]
        width = max(len(r) for r in rows)
        ids = torch.full((size, width), END, dtype=torch.long)
        for j, row in enumerate(rows):
            ids[j, : len(row)] = torch.tensor(row)
        out.append(ids)
    return out


def train(
    model: Decoder,
    texts: list[str],
    steps: int,
    *,
    lr: float = 3e-3,
    batch_size: int = 16,
    seed: int = 0,
    params: list[nn.Parameter] | None = None,
    log_every: int = 0,
) -> list[float]:
    """Next-byte training for ``steps`` steps (all parameters, or ``params``); the losses."""
    model.train()
    opt = torch.optim.AdamW(params or list(model.parameters()), lr=lr, weight_decay=0.0)
    data = batches(texts, model.cfg.max_len, batch_size, seed)
    losses = []
    for step in range(steps):
        ids = data[step % len(data)].to(next(model.parameters()).device)
        logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(float(loss.detach()), 6))
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:4d} loss {losses[-1]:.4f}", flush=True)
    model.eval()
    return losses
