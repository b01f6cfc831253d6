"""Fetching revealed outputs from IPFS and grouping them numerically (tolerance jobs)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import trio

from proofs.compare import ComparePolicy, Loader, NumericTolerance, group_results
from protocol.ipfs.store import ContentStore


def _loader(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


def files_of(root: Path) -> dict[str, Loader]:
    """Relative path -> lazy loader of every regular file under ``root``."""
    return {str(p.relative_to(root)): _loader(p) for p in sorted(root.rglob("*")) if p.is_file()}


async def tolerance_groups(
    content: ContentStore,
    votes: Mapping[int, str],
    tolerance: tuple[float, float],
    max_output: int,
) -> list[list[int]]:
    """Voting seats (seat index -> result CID) grouped by numeric agreement, largest first.

    Equal CIDs agree without a download; each distinct CID is fetched (verified, capped at
    the spec's ``max_output``) only when results differ.
    """
    cids = dict(votes)
    if len(set(cids.values())) <= 1:
        return [sorted(cids)] if cids else []
    policy = ComparePolicy(default=NumericTolerance(rtol=tolerance[0], atol=tolerance[1]))
    with tempfile.TemporaryDirectory(prefix="gpumarket-compare-") as tmp:
        roots: dict[str, Path] = {}
        for i, cid in enumerate(sorted(set(cids.values()))):
            dest = Path(tmp) / str(i)
            roots[cid] = await content.get(cid, dest, max_size=max_output)
        results = {idx: files_of(roots[cid]) for idx, cid in cids.items()}
        return await trio.to_thread.run_sync(lambda: group_results(results, policy, cids))
