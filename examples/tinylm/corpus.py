"""Seeded English-like text for the workload examples: nothing is downloaded."""

from __future__ import annotations

import random

SUBJECTS = [
    "the provider", "a requester", "the coordinator", "every node", "the market",
    "a small model", "the cluster", "one GPU", "the scheduler", "a verifier",
]
VERBS = [
    "runs", "checks", "settles", "trains", "measures", "stores", "matches", "signs",
    "commits", "reveals",
]
OBJECTS = [
    "the job", "a batch of prompts", "the result", "its stake", "a dataset", "the weights",
    "every commitment", "a fair price", "the embeddings", "a new advert",
]
TAILS = [
    "before the deadline", "on chain", "in the sandbox", "for a few tokens",
    "without a second try", "with a fixed seed", "every hour", "at full speed",
]
TOPICS = ["pricing", "verification", "storage", "training", "inference", "staking"]


def sentences(count: int, seed: int) -> list[str]:
    """``count`` short sentences drawn from ``seed``."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        words = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)]
        if rng.random() < 0.6:
            words.append(rng.choice(TAILS))
        out.append(" ".join(words).capitalize() + ".")
    return out


def questions(count: int, seed: int) -> list[str]:
    """Question-and-answer lines in one fixed style, for fine-tuning."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        subject, verb, obj = rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)
        out.append(f"Q: what does {subject} do? A: {subject} {verb} {obj}.")
    return out
