"""Timed matmul challenge that checks a provider's advertised TFLOPS.

From a verifier-chosen ``seed`` both sides derive ``A`` (m x k) and ``B`` (k x m) and, per
repetition ``i``, a permutation ``p_i`` of the k inner indices; the provider computes
``C_i = A @ B[p_i]`` for every ``i``. Permuting B's rows gives products that share
almost no partial sums (a random pair of permutations agrees on about one index), so no
product can be derived cheaply from another and the work is ``2 m^2 k reps`` flops.

Entries are multiples of 1/64 in [-1, 1): exact in float32, tf32, bfloat16 and float16,
so every device multiplies the same numbers and only accumulation rounding differs.
The provider encodes each row of each product as little-endian float16 (a coarse, fixed
relative precision) and commits to the Merkle root over rows. Only then does the verifier
pick rows (:func:`pick_rows`); the provider opens them with Merkle proofs and the verifier
recomputes each in float64 at O(k m) and accepts values within ``rel_tol`` of the row's RMS.

Timing is the verifier's wall clock from sending the seed to receiving the root. A
spoofer either takes too long (:func:`time_bound`) or skips rows to fit, and each skipped
row it is asked to open fails (:func:`openings_needed` sizes the sample).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from proofs.errors import ChallengeError
from proofs.merkle import MerkleProof, MerkleTree, leaf_hash

MAX_SIDE = 1 << 15
MAX_INNER = 1 << 16
MAX_REPS = 4096
GRID = 64  # entries are integers in [-GRID, GRID) divided by GRID

MatmulFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
ProductsFn = Callable[[np.ndarray, np.ndarray, Sequence[np.ndarray]], Iterable[np.ndarray]]
"""``products(A, B, perms)`` yields ``A @ B[perm]`` for each perm, in order. A device
backend keeps A and B resident and gathers B's rows on the device."""


@dataclass(frozen=True)
class MatmulChallenge:
    seed: bytes
    m: int
    k: int
    reps: int
    dtype: str = "float32"
    rel_tol: float = 2.0**-5  # bf16 outputs round to 2^-8 of each value

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ChallengeError("challenge seed must be 32 bytes")
        if not (
            1 <= self.m <= MAX_SIDE and 1 <= self.k <= MAX_INNER and 1 <= self.reps <= MAX_REPS
        ):
            raise ChallengeError(
                f"challenge size out of range: m={self.m} k={self.k} reps={self.reps}"
            )
        if not 0 < self.rel_tol < 1:
            raise ChallengeError("rel_tol must lie in (0, 1)")

    @property
    def flops(self) -> int:
        return 2 * self.m * self.m * self.k * self.reps

    @property
    def leaf_count(self) -> int:
        return self.m * self.reps


def _raw(seed: bytes, label: bytes, count: int) -> np.ndarray:
    # Bit generators' raw streams are stable across numpy versions (Generator methods are not).
    key = int.from_bytes(hashlib.sha256(seed + label).digest()[:16], "little")
    return np.random.Philox(key=key).random_raw(count)


def generate_inputs(ch: MatmulChallenge) -> tuple[np.ndarray, np.ndarray]:
    """``A`` (m x k) and ``B`` (k x m) as float32; convert to the device dtype as needed."""

    def grid(label: bytes, shape: tuple[int, int]) -> np.ndarray:
        n = shape[0] * shape[1]
        # Eight entries per 64-bit draw: each little-endian byte's top 7 bits, minus GRID.
        octets = _raw(ch.seed, label, -(-n // 8)).astype("<u8").view(np.uint8)[:n]
        values = (octets >> 1).astype(np.float32)
        values -= GRID
        values *= 1.0 / GRID
        return values.reshape(shape)

    return grid(b"A", (ch.m, ch.k)), grid(b"B", (ch.k, ch.m))


def permutation(ch: MatmulChallenge, rep: int) -> np.ndarray:
    keys = _raw(ch.seed, b"P" + rep.to_bytes(4, "big"), ch.k)
    return np.argsort(keys, kind="stable")


def encode_row(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype=np.float32).astype("<f2").tobytes()


def row_leaf(rep: int, row: int, encoded: bytes) -> bytes:
    return rep.to_bytes(4, "big") + row.to_bytes(4, "big") + encoded


@dataclass(frozen=True)
class RowOpening:
    rep: int
    row: int
    encoded: bytes
    proof: MerkleProof


class ChallengeWork:
    """The provider's side after computing: the root to send, rows kept for openings
    (``reps * m * m`` float16 values: size challenges so that fits in host memory)."""

    def __init__(self, ch: MatmulChallenge, rows: list[np.ndarray], elapsed_s: float) -> None:
        self.challenge = ch
        self._rows = rows  # per rep: m x m float16, exactly what was hashed
        self.elapsed_s = elapsed_s
        self.tree = MerkleTree(
            leaf_hash(row_leaf(i, r, rows[i][r].tobytes()))
            for i in range(ch.reps)
            for r in range(ch.m)
        )

    @property
    def root(self) -> bytes:
        return self.tree.root

    def open(self, picks: Sequence[tuple[int, int]]) -> list[RowOpening]:
        out = []
        for rep, row in picks:
            if not (0 <= rep < self.challenge.reps and 0 <= row < self.challenge.m):
                raise ChallengeError(f"no row ({rep}, {row}) in this challenge")
            enc = self._rows[rep][row].tobytes()
            out.append(RowOpening(rep, row, enc, self.tree.proof(rep * self.challenge.m + row)))
        return out


def numpy_products(
    a: np.ndarray, b: np.ndarray, perms: Sequence[np.ndarray]
) -> Iterator[np.ndarray]:
    """Reference backend: float32 numpy on the CPU."""
    for p in perms:
        yield a @ b[p]


def from_matmul(matmul_fn: MatmulFn) -> ProductsFn:
    """Adapt a plain ``matmul(a, b) -> c`` callable to a products backend."""

    def products(a: np.ndarray, b: np.ndarray, perms: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
        for p in perms:
            yield np.asarray(matmul_fn(a, b[p]))

    return products


def respond(
    ch: MatmulChallenge,
    matmul_fn: MatmulFn | None = None,
    *,
    products: ProductsFn | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ChallengeWork:
    """Compute every product, encode and hash its rows; the result holds the root."""
    if (matmul_fn is None) == (products is None):
        raise ChallengeError("give exactly one of matmul_fn or products")
    backend = products if products is not None else from_matmul(matmul_fn)  # type: ignore[arg-type]
    a, b = generate_inputs(ch)
    perms = [permutation(ch, i) for i in range(ch.reps)]
    start = clock()
    rows: list[np.ndarray] = []
    for c in backend(a, b, perms):
        c = np.asarray(c)
        if c.shape != (ch.m, ch.m):
            raise ChallengeError(f"backend returned shape {c.shape}, expected {(ch.m, ch.m)}")
        rows.append(np.asarray(c, dtype=np.float32).astype("<f2"))
    if len(rows) != ch.reps:
        raise ChallengeError(f"backend returned {len(rows)} products, expected {ch.reps}")
    work = ChallengeWork(ch, rows, 0.0)
    work.elapsed_s = clock() - start
    return work
