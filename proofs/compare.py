"""Compare job outputs exactly or within a numeric tolerance, and group N results.

A result is a mapping ``relative path -> bytes`` (or a zero-argument loader returning the
bytes, called at most once and only when needed). ``exact`` jobs agree when their result
CIDs are equal. ``tolerance`` jobs must have the same file set; ``.npy`` and
``.safetensors`` files must have the same tensor names, shapes and dtypes, and floating
values must satisfy ``|a - b| <= atol + rtol * max(|a|, |b|)`` (symmetric, so agreement
does not depend on argument order); NaN matches NaN and infinities match only themselves.
Integer, boolean and every other file are compared exactly.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from proofs.errors import ArtifactFormatError
from proofs.tensorfiles import Tensor, TensorFile, is_tensor_path, parse_tensor_file

Loader = bytes | Callable[[], bytes]
ResultFiles = Mapping[str, Loader]
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class NumericTolerance:
    rtol: float = 1e-5
    atol: float = 1e-8

    def __post_init__(self) -> None:
        if not (self.rtol >= 0 and self.atol >= 0):
            raise ValueError("rtol and atol must be non-negative numbers")


@dataclass(frozen=True)
class ComparePolicy:
    """Tolerance for numeric files (None: exact), with per-file overrides by glob pattern."""

    default: NumericTolerance | None = field(default_factory=NumericTolerance)
    per_file: tuple[tuple[str, NumericTolerance | None], ...] = ()

    def tolerance_for(self, path: str) -> NumericTolerance | None:
        for pattern, tol in self.per_file:
            if fnmatch.fnmatchcase(path, pattern):
                return tol
        return self.default


@dataclass(frozen=True)
class Difference:
    """Where two outputs part. ``kind`` is one of: missing, extra, parse, names, shape,
    dtype, metadata, bytes, values."""

    path: str
    kind: str
    tensor: str | None = None
    detail: str = ""
    max_abs: float = 0.0
    max_rel: float = 0.0
    mismatches: int = 0
    total: int = 0
    first_index: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ComparisonReport:
    differences: tuple[Difference, ...]
    files_compared: int

    @property
    def agree(self) -> bool:
        return not self.differences


class _Result:
    """Caches a result's bytes and parsed tensors so a group pass loads each once."""

    def __init__(self, files: ResultFiles) -> None:
        self.files = files
        self._bytes: dict[str, bytes] = {}
        self._parsed: dict[str, TensorFile | ArtifactFormatError] = {}

    def data(self, path: str) -> bytes:
        if path not in self._bytes:
            src = self.files[path]
            data = src if isinstance(src, bytes) else src()
            if not isinstance(data, bytes):
                raise TypeError(f"loader for {path} returned {type(data).__name__}, not bytes")
            self._bytes[path] = data
        return self._bytes[path]

    def parsed(self, path: str) -> TensorFile | ArtifactFormatError:
        if path not in self._parsed:
            try:
                self._parsed[path] = parse_tensor_file(path, self.data(path))
            except ArtifactFormatError as exc:
                self._parsed[path] = exc
        return self._parsed[path]


def cids_agree(a: str, b: str) -> bool:
    """Exact comparison: two results agree when they name the same content."""
    return a == b


def compare_outputs(a: ResultFiles, b: ResultFiles, policy: ComparePolicy) -> ComparisonReport:
    """Every difference between two results under ``policy``."""
    return _compare(_Result(a), _Result(b), policy)


def _compare(a: _Result, b: _Result, policy: ComparePolicy) -> ComparisonReport:
    diffs: list[Difference] = []
    pa, pb = set(a.files), set(b.files)
    diffs += [Difference(p, "missing", detail="only in the first") for p in sorted(pa - pb)]
    diffs += [Difference(p, "extra", detail="only in the second") for p in sorted(pb - pa)]
    common = sorted(pa & pb)
    for path in common:
        da, db = a.data(path), b.data(path)
        if da == db:
            continue
        tol = policy.tolerance_for(path)
        if tol is None or not is_tensor_path(path):
            diffs.append(_bytes_difference(path, da, db))
            continue
        fa, fb = a.parsed(path), b.parsed(path)
        if isinstance(fa, ArtifactFormatError) or isinstance(fb, ArtifactFormatError):
            bad = fa if isinstance(fa, ArtifactFormatError) else fb
            diffs.append(Difference(path, "parse", detail=str(bad)))
            continue
        diffs += _compare_files(path, fa, fb, tol)
    return ComparisonReport(tuple(diffs), len(common))


def _bytes_difference(path: str, da: bytes, db: bytes) -> Difference:
    n = min(len(da), len(db))
    va = np.frombuffer(da, dtype=np.uint8, count=n)
    vb = np.frombuffer(db, dtype=np.uint8, count=n)
    neq = va != vb
    count = int(neq.sum()) + abs(len(da) - len(db))
    first = int(np.argmax(neq)) if neq.any() else n
    detail = f"{len(da)} vs {len(db)} bytes"
    return Difference(
        path,
        "bytes",
        detail=detail,
        mismatches=count,
        total=max(len(da), len(db)),
        first_index=(first,),
    )


def _compare_files(
    path: str, fa: TensorFile, fb: TensorFile, tol: NumericTolerance
) -> list[Difference]:
    if set(fa.tensors) != set(fb.tensors):
        only_a = sorted(set(fa.tensors) - set(fb.tensors))
        only_b = sorted(set(fb.tensors) - set(fa.tensors))
        return [Difference(path, "names", detail=f"only first {only_a}, only second {only_b}")]
    diffs: list[Difference] = []
    if fa.metadata != fb.metadata:
        diffs.append(Difference(path, "metadata", detail="__metadata__ differs"))
    for name in sorted(fa.tensors):
        d = compare_tensors(path, name, fa.tensors[name], fb.tensors[name], tol)
        if d is not None:
            diffs.append(d)
    return diffs


def compare_tensors(
    path: str, name: str, ta: Tensor, tb: Tensor, tol: NumericTolerance
) -> Difference | None:
    """The difference between two tensors, or None when they agree."""
    a, b = ta.array, tb.array
    if a.shape != b.shape:
        return Difference(path, "shape", name, detail=f"{a.shape} vs {b.shape}")
    if ta.declared_dtype != tb.declared_dtype:
        return Difference(path, "dtype", name, detail=f"{ta.declared_dtype} vs {tb.declared_dtype}")
    if not ta.numeric:
        if a.tobytes() == b.tobytes():
            return None
        return Difference(path, "bytes", name, detail="non-numeric tensor differs")
    if a.dtype.kind in "fc":
        bad, max_abs, max_rel = _float_mismatch(a, b, tol)
    else:
        bad = a != b
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        max_abs = float(diff.max()) if diff.size else 0.0
        scale = np.maximum(np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64)))
        max_rel = float((diff / scale.clip(1)).max()) if diff.size else 0.0
    count = int(np.count_nonzero(bad))
    if count == 0:
        return None
    first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), a.shape))
    return Difference(
        path,
        "values",
        name,
        detail=f"{count} of {a.size} outside tolerance",
        max_abs=max_abs,
        max_rel=max_rel,
        mismatches=count,
        total=int(a.size),
        first_index=first,
    )


def _float_mismatch(
    a: np.ndarray, b: np.ndarray, tol: NumericTolerance
) -> tuple[np.ndarray, float, float]:
    wide = np.complex128 if a.dtype.kind == "c" else np.float64
    x, y = a.astype(wide), b.astype(wide)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(x - y)
        scale = np.maximum(np.abs(x), np.abs(y))
        ok = (diff <= tol.atol + tol.rtol * scale) & np.isfinite(x) & np.isfinite(y)
        ok |= x == y  # equal infinities
        ok |= np.isnan(x) & np.isnan(y)
        finite = np.isfinite(diff)
        max_abs = float(diff[finite].max()) if finite.any() else 0.0
        rel = np.where(finite & (scale > 0), diff / np.where(scale > 0, scale, 1), 0.0)
        max_rel = float(rel.max()) if rel.size else 0.0
    if (~ok & ~finite).any():  # NaN against a number, or unequal infinities
        max_abs = max_rel = float("inf")
    return ~ok, max_abs, max_rel


def exact_groups(cids: Mapping[K, str]) -> list[list[K]]:
    """Group results of an ``exact`` job by CID, largest group first."""
    groups: dict[str, list[K]] = {}
    for key, cid in cids.items():
        groups.setdefault(cid, []).append(key)
    return sorted(groups.values(), key=len, reverse=True)


def group_results(
    results: Mapping[K, ResultFiles],
    policy: ComparePolicy,
    cids: Mapping[K, str] | None = None,
) -> list[list[K]]:
    """Agreement classes for a ``tolerance`` job, largest first (ties: first seen first).

    Agreement within a tolerance is not transitive, so a result joins a class only when it
    agrees with *every* member; equal CIDs agree without loading anything.
    """
    cached = {k: _Result(v) for k, v in results.items()}
    groups: list[list[K]] = []
    for key in results:
        same = _same_cid_group(key, groups, cids)
        if same is not None:
            same.append(key)  # identical content to a member agrees as that member did
            continue
        for group in groups:
            if all(_agree(key, other, cached, policy, cids) for other in group):
                group.append(key)
                break
        else:
            groups.append([key])
    order = {id(g): i for i, g in enumerate(groups)}
    return sorted(groups, key=lambda g: (-len(g), order[id(g)]))


def _same_cid_group(key: K, groups: list[list[K]], cids: Mapping[K, str] | None) -> list[K] | None:
    if cids is None or key not in cids:
        return None
    for group in groups:
        if any(cids.get(other) == cids[key] for other in group):
            return group
    return None


def _agree(
    a: K, b: K, cached: Mapping[K, _Result], policy: ComparePolicy, cids: Mapping[K, str] | None
) -> bool:
    if cids is not None and a in cids and b in cids and cids[a] == cids[b]:
        return True
    return _compare(cached[a], cached[b], policy).agree


def majority(groups: Iterable[list[K]], total: int) -> list[K] | None:
    """The group holding more than half of ``total`` results, if any."""
    for g in groups:
        if 2 * len(g) > total:
            return g
    return None
