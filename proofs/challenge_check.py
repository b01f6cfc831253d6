"""The verifier's side of the exact benchmark challenge: row picks, openings, timing, verdict.

Cost to the verifier: generating ``B`` (k x m) once and O(k m) per opened row (its row of
``A`` drawn alone), against the provider's O(m^2 k reps). See :mod:`proofs.challenge` for
the construction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from proofs.challenge import (
    EXACT_MAX_FLOPS,
    EXACT_MAX_INNER,
    EXACT_MAX_REPS,
    FP32_REL_TOL,
    ExactChallenge,
    ExactOpening,
    decode_row,
    digest_keys,
    digests_from_words,
    exact_b,
    exact_leaf,
    exact_permutation,
    exact_rows_a,
    row_words,
)
from proofs.errors import ChallengeError, MerkleProofError
from proofs.merkle import leaf_hash, root_from_proof


def round_to_bits(units: np.ndarray, bits: int) -> np.ndarray:
    """Integers rounded to ``bits`` significant bits, round-to-nearest-even (int64 in, out):
    the one conversion of an exact fp32 accumulator to bf16 (8) or fp16 (11)."""
    v = np.asarray(units, dtype=np.int64)
    mag = np.abs(v)
    if int(mag.max(initial=0)) >= 1 << 53:
        raise ChallengeError("values too large to round exactly")
    length = np.frexp(mag.astype(np.float64))[1].astype(np.int64)  # bit length, exact
    shift = np.maximum(length - bits, 0)
    q = mag >> shift
    rem = mag - (q << shift)
    half = np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)
    up = (shift > 0) & ((rem > half) | ((rem == half) & (q % 2 == 1)))
    out: np.ndarray = np.sign(v) * ((q + up) << shift)
    return out


@dataclass(frozen=True)
class ExactTiming:
    """How long an honest provider may take for a challenge of ``flops`` at its claim.

    ``slack`` multiplies the compute time at the claimed speed; ``digest_s_per_row_entry``
    prices the device's digest pass per output entry (it scales with m^2, not m^2 k);
    ``allowance_s`` covers the round trip and setup.
    """

    slack: float = 1.4
    allowance_s: float = 0.05
    digest_s_per_entry: float = 0.0


def exact_time_bound(ch: ExactChallenge, claimed_tflops: float, terms: ExactTiming) -> float:
    if claimed_tflops <= 0:
        raise ChallengeError("claimed TFLOPS must be positive")
    # The devices work at once: the bound is one device's share at the per-device claim.
    compute = ch.device_flops / (claimed_tflops * 1e12)
    digest = ch.row_count // ch.devices * ch.m * terms.digest_s_per_entry
    return compute * terms.slack + digest + terms.allowance_s


def size_exact_challenge(
    seed: bytes,
    dtype: str,
    claimed_tflops: float,
    compute_s: float = 1.5,
    m: int = 8192,
    k: int = EXACT_MAX_INNER,
    devices: int = 1,
) -> ExactChallenge:
    """A challenge taking about ``compute_s`` at the claimed speed per device on each of
    ``devices`` devices at once (the nearest whole number of products a device, at least
    one), within the bounds."""
    if claimed_tflops <= 0:
        raise ChallengeError("claimed TFLOPS must be positive")
    per_rep = 2 * m * m * k / (claimed_tflops * 1e12)
    reps = max(
        1,
        min(
            EXACT_MAX_REPS,
            int(EXACT_MAX_FLOPS // (2 * m * m * k)),
            round(compute_s / per_rep),
        ),
    )
    return ExactChallenge(seed, dtype, m=m, k=k, reps=reps * devices, devices=devices)


def pick_exact_rows(
    ch: ExactChallenge, root: bytes, entropy: bytes, count: int
) -> list[tuple[int, int]]:
    """Distinct (rep, row) pairs from the verifier's secret ``entropy`` and the root."""
    count = min(count, ch.row_count)
    key = int.from_bytes(
        hashlib.sha256(b"xpick" + ch.seed + root + entropy).digest()[:16], "little"
    )
    gen = np.random.Generator(np.random.Philox(key=key))
    leaves = gen.choice(ch.row_count, size=count, replace=False)
    return [(int(i) // ch.m, int(i) % ch.m) for i in sorted(leaves)]


class ExactChecker:
    """Recomputes opened rows on the CPU (numpy, O(k m) a row) and checks their digests.

    Memory and time: ``B`` once (k x m: float32 for the exact dtypes, whose every partial
    sum is an integer below 2^24, so float32 sums it exactly in any order; float64 for
    fp32) and only the opened rows of ``A``, drawn on demand (:func:`exact_rows_a`).
    """

    def __init__(self, ch: ExactChallenge) -> None:
        self.challenge = ch
        self._ib = exact_b(ch).astype(np.float32 if ch.spec.exact else np.float64)
        self._keys = digest_keys(ch)

    def expected_row(self, rep: int, row: int) -> np.ndarray:
        """The row as the output dtype holds it, in float64 (exact dtypes: exactly)."""
        ch, spec = self.challenge, self.challenge.spec
        y = np.zeros(ch.k, dtype=self._ib.dtype)
        y[exact_permutation(ch, rep)] = exact_rows_a(ch, [row])[0]
        # exact: every |partial sum| < 2^24 (fp32: 41-bit products in float64)
        sums: np.ndarray = np.asarray(y @ self._ib, dtype=np.float64)
        scale = 2.0**-spec.unit_shift
        if not spec.exact:
            return np.asarray(sums * scale)
        units = sums.astype(np.int64)
        if spec.out_bits < 24:
            units = round_to_bits(units, spec.out_bits)
        return np.asarray(units.astype(np.float64) * scale)

    def check(self, root: bytes, opening: ExactOpening) -> str | None:
        """None when the opening is good, else why it is not."""
        ch = self.challenge
        if not (0 <= opening.rep < ch.reps and 0 <= opening.row < ch.m):
            return "row out of range"
        g = ch.rows_per_leaf
        index = (opening.rep * ch.m + opening.row) // g
        if opening.proof.index != index or opening.proof.leaf_count != ch.leaf_count:
            return "proof is for another leaf"
        if len(opening.group) != 8 * g:
            return f"leaf carries {len(opening.group)} digest bytes, expected {8 * g}"
        try:
            got = decode_row(ch, opening.encoded)
            digest = int(digests_from_words(row_words(ch, got), self._keys)[0])
        except ChallengeError as exc:
            return str(exc)
        slot = opening.row % g
        if opening.group[8 * slot : 8 * slot + 8] != digest.to_bytes(8, "big"):
            return "row does not hash to the digest committed for it"
        try:
            leaf = leaf_hash(exact_leaf(opening.rep, opening.row - slot, opening.group))
            if root_from_proof(leaf, opening.proof) != root:
                return "row digests or Merkle proof do not reach the committed root"
        except MerkleProofError as exc:
            return f"bad Merkle proof: {exc}"
        want = self.expected_row(opening.rep, opening.row)
        if ch.spec.exact:
            wrong = int(np.count_nonzero(got != want))
            return (
                None if wrong == 0 else f"{wrong} of {ch.m} entries differ from the exact product"
            )
        scale = max(float(np.sqrt(np.mean(want**2))), 1e-300)
        err = float(np.max(np.abs(got - want))) / scale
        if not np.all(np.isfinite(got)) or err > FP32_REL_TOL:
            return f"fp32 row off by {err:.3g} of its RMS (tolerance {FP32_REL_TOL:.3g})"
        return None


@dataclass(frozen=True)
class ExactVerdict:
    passed: bool
    wrong_rows: bool
    """Some opened row was wrong or missing: the claim fails whatever the time."""
    bound_s: float
    elapsed_s: float
    reasons: tuple[str, ...] = ()


def judge_exact(
    ch: ExactChallenge,
    claimed_tflops: float,
    root: bytes,
    elapsed_s: float,
    picks: Sequence[tuple[int, int]],
    openings: Sequence[ExactOpening],
    terms: ExactTiming,
    checker: ExactChecker | None = None,
) -> ExactVerdict:
    """Pass only if the root came within the bound and every picked row opens true."""
    checker = checker or ExactChecker(ch)
    bound = exact_time_bound(ch, claimed_tflops, terms)
    reasons: list[str] = []
    by_pick = {(o.rep, o.row): o for o in openings}
    for pick in picks:
        o = by_pick.get(pick)
        why = "not opened" if o is None else checker.check(root, o)
        if why is not None:
            reasons.append(f"row {pick}: {why}")
    wrong = bool(reasons)
    if not elapsed_s <= bound:
        reasons.append(f"took {elapsed_s:.3f}s, bound {bound:.3f}s")
    return ExactVerdict(
        passed=not reasons,
        wrong_rows=wrong,
        bound_s=bound,
        elapsed_s=elapsed_s,
        reasons=tuple(reasons),
    )
