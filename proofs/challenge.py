"""The timed, exact per-dtype matmul challenge that checks a provider's advertised TFLOPS.

From a verifier-chosen seed both sides derive integer inputs ``A`` (m x k) and ``B``
(k x m), scaled once by a power of two, and per repetition a permutation of the k inner
indices; the provider computes ``C_i = A @ B[p_i]`` for every repetition on its device, in
the claimed dtype. The ranges make every product and partial sum exact in an fp32
accumulator (bf16, fp16, tf32), so every honest device gets the same bits; fp32 claims are
checked against a tolerance that tf32 cannot meet. Each output row is hashed on the device
to a specified, non-linear 64-bit digest; only the digests reach the host, which commits to
the Merkle root over them. Only then does the verifier pick rows to open
(:func:`proofs.challenge_check.pick_exact_rows`) and recompute them exactly. The block
comment below gives the ranges, scales, flags and the digest bit for bit.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from proofs.errors import ChallengeError
from proofs.merkle import MerkleProof, MerkleTree, leaf_hash


def _raw(seed: bytes, label: bytes, count: int) -> np.ndarray:
    # Bit generators' raw streams are stable across numpy versions (Generator methods are not).
    key = int.from_bytes(hashlib.sha256(seed + label).digest()[:16], "little")
    return np.random.Philox(key=key).random_raw(count)


# ---------------------------------------------------------------------------------------
# The exact per-dtype challenge
# ---------------------------------------------------------------------------------------
#
# For a claimed speed on dtype D the provider computes C_i = A @ B[p_i] for reps i, with A
# (m x k) and B (k x m) drawn from the seed as integers and scaled once by a power of two:
# ``A = IA * 2^-a_shift`` and ``B = IB * 2^-b_shift`` (:data:`SPECS`).
#
# Exactness (bf16, fp16, tf32). |IA| <= 255 and |IB| <= 15. bf16 has 8 significant bits,
# fp16 and tf32 have 11, so every input is exact in D. A product has at most 8 + 4 = 12
# significant bits and is exact in an fp32 accumulator (24 bits). Every partial sum of any
# subset of the k products, in any order, is at most k * 255 * 15 <= 15,667,200 < 2^24 for
# k <= 4096 (:data:`EXACT_MAX_INNER`), so it is an integer (in units of
# 2^-(a_shift + b_shift)) that fp32 holds exactly: the accumulator's value is the exact sum
# on every device, whatever its blocking, split-K or summation order. The only rounding left
# is the one conversion of the fp32 accumulator to the output dtype, round-to-nearest-even
# to 8 (bf16) or 11 (fp16) significant bits, which the verifier reproduces on integers
# (:func:`round_to_bits`); tf32 outputs are fp32 and need none. fp16's range: with
# a_shift = 5 and b_shift = 4 every output is below 2^24 * 2^-9 = 2^15 < 65504, and no value
# is subnormal (the smallest non-zero output is 2^-9 > 2^-14). Torch's
# ``allow_bf16_reduced_precision_reduction`` and ``allow_fp16_reduced_precision_reduction``
# (split-K partials rounded to 16 bits) are switched off around the device's work
# (:func:`device_row_digests`); they would round partial sums.
#
# Standing in with narrower units: |IA| <= 255 needs 9 signed bits, so int8 cannot hold A
# (splitting it into two int8 halves doubles the int8 work, which leaves no gain over bf16),
# and fp8 (e4m3: 4 significant bits) holds neither 255 nor most of A. IB fits fp8, A does
# not, so an fp8 unit cannot run the product either.
#
# fp32. |IA|, |IB| <= 2^20 - 1 with 20-bit shifts: inputs in (-1, 1) with up to 20
# significant bits. Products (40 bits) are not exact in fp32, so fp32 rows are checked
# against a float64 recomputation: the largest error of a row, relative to the row's RMS,
# must be at most :data:`FP32_REL_TOL` (2^-14). fp32 accumulation errs by about
# 2^-24 sqrt(k) of the RMS (under 2^-17 at k = 4096); tf32 rounds every input to 11
# significant bits, an error of about 2^-12 of each product that sums to about 2^-12 of the
# row's RMS per entry, whose largest over a row is far above 2^-14: tf32 fails every row.
#
# Row digest (specified bit for bit; both sides compute it, the provider on its device).
# Each output entry gives a 32-bit word w: for bf16/fp16/tf32 the exact integer
# ``u = value * 2^(a_shift + b_shift)`` taken mod 2^32; for fp32 the entry's IEEE-754 bit
# pattern. With P = 2^31 - 1 and per-column keys alpha_L[j] in [1, P), beta_L[j] in [0, P)
# drawn from the seed for lanes L = 0, 1:
#     t = ((w mod P) * alpha_L[j] + beta_L[j]) mod P,   h_L = sum_j t^3 mod P   (mod P),
# and the row's digest is the 8 bytes h_0 * 2^32 + h_1, big-endian. All intermediate values
# stay below 2^63, so int64 arithmetic on any device gives the same digest. A cube of every
# entry cannot be had from a few inner products with precomputed vectors (a linear digest
# could: sum_j key_j C[r, j] = A[r] . (B key) costs O(k) a row instead of O(k m)).
# Only the digests cross to the host (8 bytes a row); the host builds the SHA-256 Merkle tree
# over leaves of :data:`LEAF_ROWS` consecutive rows of one product,
# ``rep || first row || their digests`` (:func:`exact_leaf`), which keeps a GPU-sized
# challenge (millions of rows) to a tree the host hashes in well under a second. An opened
# row comes with its leaf's digests; the verifier recomputes the row's own digest from it.

DIGEST_P = (1 << 31) - 1
DIGEST_BYTES = 8
EXACT_MAX_INNER = 4096
"""Largest k for which every partial sum of bf16/fp16/tf32 inputs stays below 2^24."""
FP32_REL_TOL = 2.0**-14
EXACT_MAX_SIDE = 1 << 14
EXACT_MAX_REPS = 4096
"""Most products one device computes."""
LEAF_ROWS = 64
"""Row digests per Merkle leaf (all rows when m is smaller)."""
EXACT_MAX_FLOPS = 5e16
"""About 60 s of bf16 on an H200: no honest claim sizes one device's share past this."""
EXACT_MAX_DEVICES = 16
"""Most devices one challenge runs on at once (the GPUs of one host)."""


@dataclass(frozen=True)
class DtypeSpec:
    """How one advertised dtype is challenged: integer ranges, scales, output format."""

    name: str
    a_max: int
    b_max: int
    a_shift: int
    b_shift: int
    out_bits: int  # significant bits of the output dtype (0: fp32, compared by tolerance)
    value_bytes: int  # bytes per output entry on the wire
    exact: bool

    @property
    def unit_shift(self) -> int:
        return self.a_shift + self.b_shift


SPECS: dict[str, DtypeSpec] = {
    "bf16": DtypeSpec("bf16", 255, 15, 0, 0, out_bits=8, value_bytes=2, exact=True),
    "fp16": DtypeSpec("fp16", 255, 15, 5, 4, out_bits=11, value_bytes=2, exact=True),
    "tf32": DtypeSpec("tf32", 255, 15, 0, 0, out_bits=24, value_bytes=4, exact=True),
    "fp32": DtypeSpec(
        "fp32", (1 << 20) - 1, (1 << 20) - 1, 20, 20, out_bits=0, value_bytes=4, exact=False
    ),
}
CHALLENGE_DTYPES = tuple(SPECS)


@dataclass(frozen=True)
class ExactChallenge:
    """``reps`` products ``A @ B[p_i]`` in ``dtype`` (one of :data:`CHALLENGE_DTYPES`),
    split over ``devices`` devices that compute at once: device ``d`` computes the
    ``reps / devices`` consecutive products from ``d * reps / devices``. A host that has
    fewer devices than it claims computes several shares one after another, and misses the
    time bound, which is a single share's (:func:`proofs.challenge_check.exact_time_bound`).
    """

    seed: bytes
    dtype: str
    m: int
    k: int
    reps: int
    devices: int = 1

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ChallengeError("challenge seed must be 32 bytes")
        if self.dtype not in SPECS:
            raise ChallengeError(
                f"unknown challenge dtype {self.dtype!r}; use one of {', '.join(SPECS)}"
            )
        if not (
            1 <= self.m <= EXACT_MAX_SIDE
            and 1 <= self.k <= EXACT_MAX_INNER
            and 1 <= self.reps <= EXACT_MAX_REPS * max(1, self.devices)
        ):
            raise ChallengeError(
                f"challenge size out of range: m={self.m} (max {EXACT_MAX_SIDE}) "
                f"k={self.k} (max {EXACT_MAX_INNER}) reps={self.reps} (max {EXACT_MAX_REPS} "
                "a device)"
            )
        if self.m % self.rows_per_leaf:
            raise ChallengeError(f"m={self.m} must be a multiple of {LEAF_ROWS} (or below it)")
        if not 1 <= self.devices <= EXACT_MAX_DEVICES or self.reps % self.devices:
            raise ChallengeError(
                f"devices={self.devices} must be 1 to {EXACT_MAX_DEVICES} and divide "
                f"reps={self.reps}"
            )
        if self.device_flops > EXACT_MAX_FLOPS:
            raise ChallengeError(
                f"challenge of {self.device_flops:.3g} flops a device exceeds {EXACT_MAX_FLOPS:.3g}"
            )

    @property
    def spec(self) -> DtypeSpec:
        return SPECS[self.dtype]

    @property
    def flops(self) -> int:
        return 2 * self.m * self.m * self.k * self.reps

    @property
    def device_reps(self) -> int:
        """Products each device computes."""
        return self.reps // self.devices

    @property
    def device_flops(self) -> int:
        """One device's share of the work: what the time bound is set by."""
        return self.flops // self.devices

    def device_of(self, rep: int) -> int:
        """The device (0-based) that computes product ``rep``."""
        return rep // self.device_reps

    @property
    def row_count(self) -> int:
        return self.m * self.reps

    @property
    def rows_per_leaf(self) -> int:
        return min(LEAF_ROWS, self.m)

    @property
    def leaf_count(self) -> int:
        return self.row_count // self.rows_per_leaf

    @property
    def row_bytes(self) -> int:
        return self.m * self.spec.value_bytes


def _uniform_ints(seed: bytes, label: bytes, count: int, bound: int, start: int = 0) -> np.ndarray:
    """Integers ``start`` to ``start + count`` (exclusive) of the stream of integers in
    [-bound, bound]: each 32-bit half of a Philox draw (low half first) mod 2 bound + 1.
    Any slice is drawn without the integers before it (Philox's counter jumps)."""
    first = start // 2  # the draw holding integer ``start``
    skip = first % 4  # Philox makes four 64-bit draws per counter step
    key = int.from_bytes(hashlib.sha256(seed + label).digest()[:16], "little")
    gen = np.random.Philox(key=key)
    gen.advance(first // 4)
    draws = -(-(start % 2 + count) // 2)
    raw = gen.random_raw(skip + draws)[skip:]
    halves = raw.astype("<u8").view("<u4")[start % 2 : start % 2 + count]
    return (halves % np.uint32(2 * bound + 1)).astype(np.int64) - bound


def exact_inputs(ch: ExactChallenge) -> tuple[np.ndarray, np.ndarray]:
    """The integer matrices ``IA`` (m x k) and ``IB`` (k x m), int64; the device inputs are
    ``IA * 2^-a_shift`` and ``IB * 2^-b_shift`` in the challenge dtype."""
    spec = ch.spec
    ia = _uniform_ints(ch.seed, b"XA" + spec.name.encode(), ch.m * ch.k, spec.a_max)
    return ia.reshape(ch.m, ch.k), exact_b(ch)


def exact_b(ch: ExactChallenge) -> np.ndarray:
    """``IB`` (k x m, int64) alone."""
    spec = ch.spec
    ib = _uniform_ints(ch.seed, b"XB" + spec.name.encode(), ch.k * ch.m, spec.b_max)
    return ib.reshape(ch.k, ch.m)


def exact_rows_a(ch: ExactChallenge, rows: Sequence[int]) -> np.ndarray:
    """Rows ``rows`` of ``IA`` (len(rows) x k, int64), drawn without the rest of ``IA``:
    what a verifier needs for the rows it opens."""
    spec = ch.spec
    label = b"XA" + spec.name.encode()
    out = np.empty((len(rows), ch.k), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i] = _uniform_ints(ch.seed, label, ch.k, spec.a_max, start=row * ch.k)
    return out


def exact_permutation(ch: ExactChallenge, rep: int) -> np.ndarray:
    keys = _raw(ch.seed, b"XP" + rep.to_bytes(4, "big"), ch.k)
    return np.argsort(keys, kind="stable")


def digest_keys(ch: ExactChallenge) -> np.ndarray:
    """int64 array (4, m): alpha_0, beta_0, alpha_1, beta_1 for every output column."""
    raw = _raw(ch.seed, b"XD", 4 * ch.m).reshape(4, ch.m)
    keys = (raw % np.uint64(DIGEST_P - 1)).astype(np.int64)
    keys[0] += 1  # alpha in [1, P)
    keys[2] += 1
    return keys


def row_words(ch: ExactChallenge, values: np.ndarray) -> np.ndarray:
    """int64 words in [0, 2^32) of rows of output values (float32 or float64, exact)."""
    spec = ch.spec
    if spec.exact:
        units = np.asarray(values, dtype=np.float64) * float(2**spec.unit_shift)
        ints = units.astype(np.int64)
        if not np.array_equal(ints.astype(np.float64), units):
            raise ChallengeError("an exact-dtype row holds a non-integer value")
        return np.remainder(ints, 1 << 32)
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    return bits.astype(np.int64)


def digests_from_words(words: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Row digests (uint64, one per row of ``words``) as specified in the module notes."""
    w = np.remainder(np.atleast_2d(words), DIGEST_P)
    out = np.zeros(w.shape[0], dtype=np.uint64)
    for lane in (0, 1):
        t = (w * keys[2 * lane] + keys[2 * lane + 1]) % DIGEST_P
        cube = (t * t % DIGEST_P) * t % DIGEST_P
        h = cube.sum(axis=1) % DIGEST_P
        out |= h.astype(np.uint64) << np.uint64(32 * (1 - lane))
    return out


def exact_leaf(rep: int, first_row: int, digests: bytes) -> bytes:
    """Leaf data: the product, its first row, then the rows' 8-byte big-endian digests."""
    return rep.to_bytes(4, "big") + first_row.to_bytes(4, "big") + digests


def decode_row(ch: ExactChallenge, encoded: bytes) -> np.ndarray:
    """Wire bytes of an opened row (the output dtype, little-endian) as float64."""
    if len(encoded) != ch.row_bytes:
        raise ChallengeError(f"row has {len(encoded)} bytes, expected {ch.row_bytes}")
    if ch.dtype == "bf16":
        bits = np.frombuffer(encoded, dtype="<u2").astype(np.uint32) << np.uint32(16)
        return bits.view(np.float32).astype(np.float64)
    if ch.dtype == "fp16":
        return np.frombuffer(encoded, dtype="<f2").astype(np.float64)
    return np.frombuffer(encoded, dtype="<f4").astype(np.float64)


@dataclass(frozen=True)
class ExactOpening:
    rep: int
    row: int
    encoded: bytes
    group: bytes
    """Digests of the rows under the row's leaf (8 bytes each, big-endian)."""
    proof: MerkleProof


class ExactWork:
    """The provider's side after computing: digests (host), root, and a way to reopen rows.

    Rows are recomputed on demand for openings (same kernel and shape, so bit-identical),
    so nothing but 8 bytes a row leaves the device during the timed part.
    """

    def __init__(
        self,
        ch: ExactChallenge,
        digests: np.ndarray,
        elapsed_s: float,
        reopen: Callable[[int], np.ndarray],
    ) -> None:
        if digests.shape != (ch.row_count,):
            raise ChallengeError(f"{digests.shape} digests, expected {ch.row_count}")
        self.challenge = ch
        self.digests = digests
        self.elapsed_s = elapsed_s
        self._reopen = reopen
        g = ch.rows_per_leaf
        self._groups = digests.astype(">u8").reshape(ch.leaf_count, g)
        self.tree = MerkleTree(
            leaf_hash(exact_leaf((i * g) // ch.m, (i * g) % ch.m, group.tobytes()))
            for i, group in enumerate(self._groups)
        )

    @property
    def root(self) -> bytes:
        return self.tree.root

    def open(self, picks: Sequence[tuple[int, int]]) -> list[ExactOpening]:
        ch = self.challenge
        products: dict[int, np.ndarray] = {}
        out = []
        for rep, row in picks:
            if not (0 <= rep < ch.reps and 0 <= row < ch.m):
                raise ChallengeError(f"no row ({rep}, {row}) in this challenge")
            if rep not in products:
                products[rep] = self._reopen(rep)
            leaf = (rep * ch.m + row) // ch.rows_per_leaf
            out.append(
                ExactOpening(
                    rep,
                    row,
                    products[rep][row].tobytes(),
                    self._groups[leaf].tobytes(),
                    self.tree.proof(leaf),
                )
            )
        return out


DIGEST_BLOCK = 1 << 22
"""Output entries digested at once on the device (int64 temporaries of 32 MiB each)."""

_RUN_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "tf32": "float32", "fp32": "float32"}


def device_row_digests(
    ch: ExactChallenge,
    device: str | Sequence[str],
    *,
    clock: Callable[[], float] = time.perf_counter,
    tamper: Callable[[Any, Any], tuple[Any, Any]] | None = None,
) -> ExactWork:
    """The provider's timed work with torch: every product and its row digests on the
    device(s); only digests (8 bytes a row) are copied to the host.

    ``device`` names one device per share of the challenge (``ch.devices`` of them; a
    single name for a one-device challenge). The shares run at once, one thread each, from
    a common start once every device holds its inputs; the elapsed time runs from that
    start to the last share's digests on the host.

    Sets, for the duration, reduced-precision reductions off, and tf32 on exactly when the
    challenge is tf32. ``tamper(a, b) -> (a, b)`` rewrites the device inputs (tests and
    benches model cheaper units with it; providers never pass it).
    """
    import torch

    devices = [device] if isinstance(device, str) else list(device)
    if len(devices) != ch.devices:
        raise ChallengeError(f"challenge is for {ch.devices} devices, given {len(devices)}")
    ia, ib = exact_inputs(ch)  # below 2^21: exact in float32, which every backend has
    keys = digest_keys(ch)
    shares = [
        _Share(torch, ch, name, d * ch.device_reps, ia, ib, keys, tamper)
        for d, name in enumerate(devices)
    ]
    del ia, ib  # the devices hold their own copies
    with _precision(torch, ch.dtype):
        digests, elapsed = _at_once(shares, clock)

    def reopen(rep: int) -> np.ndarray:
        return shares[ch.device_of(rep)].reopen(rep)

    return ExactWork(ch, digests, elapsed, reopen)


class _Share:
    """One device's part of a challenge: its inputs on the device, its products' digests."""

    def __init__(
        self,
        torch: Any,
        ch: ExactChallenge,
        device: str,
        first: int,
        ia: np.ndarray,
        ib: np.ndarray,
        keys: np.ndarray,
        tamper: Callable[[Any, Any], tuple[Any, Any]] | None,
    ) -> None:
        spec = ch.spec
        dtype = getattr(torch, _RUN_DTYPE[ch.dtype])
        self.torch, self.ch, self.device = torch, ch, device
        self.reps = range(first, first + ch.device_reps)
        self.keys = torch.from_numpy(keys).to(device)
        a = (torch.from_numpy(ia).to(torch.float32).to(device) * 2.0**-spec.a_shift).to(dtype)
        b = (torch.from_numpy(ib).to(torch.float32).to(device) * 2.0**-spec.b_shift).to(dtype)
        if tamper is not None:
            a, b = tamper(a, b)
        self.a, self.b = a, b
        self.perms = {i: torch.from_numpy(exact_permutation(ch, i)).to(device) for i in self.reps}

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize(self.device)

    def product(self, rep: int) -> Any:
        return self.a @ self.b.index_select(0, self.perms[rep])

    def digest(self, c: Any) -> Any:
        """The row digests of product ``c``, a block of rows at a time, so the int64
        temporaries stay near :data:`DIGEST_BLOCK` entries whatever m is."""
        rows = max(1, DIGEST_BLOCK // max(1, c.shape[1]))
        if rows >= c.shape[0]:
            return self._digest(c)
        return self.torch.cat([self._digest(c[i : i + rows]) for i in range(0, c.shape[0], rows)])

    def _digest(self, c: Any) -> Any:
        torch, spec, p = self.torch, self.ch.spec, DIGEST_P
        if spec.exact:
            unit = float(2**spec.unit_shift)
            w = torch.remainder((c.to(torch.float32) * unit).to(torch.int64), 1 << 32)
        else:
            w = c.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
        w = torch.remainder(w, p)
        out = torch.zeros(c.shape[0], dtype=torch.int64, device=c.device)
        for lane in (0, 1):
            t = (w * self.keys[2 * lane] + self.keys[2 * lane + 1]) % p
            cube = (t * t % p) * t % p
            out += (cube.sum(dim=1) % p) << (32 * (1 - lane))
        return out

    def digests(self) -> np.ndarray:
        """This share's row digests, in product order, on the host."""
        parts = [self.digest(self.product(i)) for i in self.reps]
        return np.asarray(self.torch.cat(parts).cpu().numpy().view(np.uint64).copy())

    def reopen(self, rep: int) -> np.ndarray:
        torch, ch = self.torch, self.ch
        with _precision(torch, ch.dtype):
            host = self.product(rep).cpu()
        if ch.dtype == "bf16":
            return np.asarray(host.view(torch.int16).numpy().view("<u2"))
        return np.asarray(host.numpy(), dtype="<f2" if ch.dtype == "fp16" else "<f4")


def _at_once(shares: list[_Share], clock: Callable[[], float]) -> tuple[np.ndarray, float]:
    """Every share on its own thread from one start; (digests in order, start to last end)."""
    gate = threading.Barrier(len(shares))
    results: list[np.ndarray | None] = [None] * len(shares)
    starts = [0.0] * len(shares)
    ends = [0.0] * len(shares)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        share = shares[i]
        try:
            share.sync()
        except BaseException as exc:  # re-raised on the calling thread below
            errors.append(exc)
        gate.wait()
        starts[i] = clock()
        try:
            results[i] = share.digests()
        except BaseException as exc:  # re-raised on the calling thread below
            errors.append(exc)
        ends[i] = clock()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(shares))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    digests = np.concatenate([r for r in results if r is not None])
    return digests, max(ends) - min(starts)


class _precision:
    """Context: exact-accumulation flags for ``dtype`` on, restored on exit."""

    def __init__(self, torch: Any, dtype: str) -> None:
        self.torch = torch
        self.dtype = dtype

    def __enter__(self) -> None:
        m = self.torch.backends.cuda.matmul
        self.saved = (
            m.allow_tf32,
            m.allow_bf16_reduced_precision_reduction,
            m.allow_fp16_reduced_precision_reduction,
            self.torch.get_float32_matmul_precision(),
        )
        m.allow_bf16_reduced_precision_reduction = False
        m.allow_fp16_reduced_precision_reduction = False
        self.torch.set_float32_matmul_precision("high" if self.dtype == "tf32" else "highest")
        m.allow_tf32 = self.dtype == "tf32"

    def __exit__(self, *exc: object) -> None:
        m = self.torch.backends.cuda.matmul
        self.torch.set_float32_matmul_precision(self.saved[3])
        m.allow_tf32 = self.saved[0]
        m.allow_bf16_reduced_precision_reduction = self.saved[1]
        m.allow_fp16_reduced_precision_reduction = self.saved[2]
