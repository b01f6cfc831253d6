from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs.challenge import (
    MatmulChallenge,
    RowOpening,
    generate_inputs,
    numpy_products,
    permutation,
    respond,
)
from proofs.challenge_check import (
    RowChecker,
    TimingTerms,
    freivalds,
    implied_tflops,
    judge,
    openings_needed,
    pick_rows,
    size_challenge,
    time_bound,
)
from proofs.errors import ChallengeError
from proofs.merkle import MerkleProof

SEED = bytes(range(32))
GENEROUS = TimingTerms(slack=1.4, allowance_s=60.0)


def small(seed: bytes = SEED, m: int = 16, k: int = 64, reps: int = 3) -> MatmulChallenge:
    return MatmulChallenge(seed, m=m, k=k, reps=reps)


def all_rows(ch: MatmulChallenge) -> list[tuple[int, int]]:
    return [(i, r) for i in range(ch.reps) for r in range(ch.m)]


def test_inputs_are_deterministic_exact_grid_values() -> None:
    a1, b1 = generate_inputs(small())
    a2, b2 = generate_inputs(small())
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    a3, _ = generate_inputs(small(seed=b"\x01" * 32))
    assert not np.array_equal(a1, a3)
    assert np.array_equal(a1 * 64, np.round(a1 * 64)) and a1.min() >= -1 and a1.max() < 1
    # exactly representable in bfloat16, so every device multiplies the same numbers
    assert np.array_equal(torch.from_numpy(a1).bfloat16().float().numpy(), a1)


def test_permutations_are_permutations_and_differ_per_rep() -> None:
    ch = small(k=500)
    p0, p1 = permutation(ch, 0), permutation(ch, 1)
    assert sorted(p0.tolist()) == list(range(500))
    assert int((p0 == p1).sum()) < 10


def test_honest_numpy_response_passes() -> None:
    ch = small()
    work = respond(ch, products=numpy_products)
    picks = all_rows(ch)
    v = judge(ch, 1e-6, work.root, 0.01, picks, work.open(picks), GENEROUS)
    assert v.passed, v.reasons


def test_bf16_device_matmul_passes() -> None:
    def bf16_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (torch.from_numpy(a).bfloat16() @ torch.from_numpy(b).bfloat16()).float().numpy()

    ch = small(m=32, k=256)
    work = respond(ch, bf16_matmul)
    picks = all_rows(ch)
    assert judge(ch, 1e-6, work.root, 0.01, picks, work.open(picks), GENEROUS).passed


def test_low_precision_inputs_fail() -> None:
    def fp8ish(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # keep 3 mantissa bits, as an fp8 e4m3 shortcut would
        def crush(x: np.ndarray) -> np.ndarray:
            m, e = np.frexp(x)
            return np.ldexp(np.round(m * 16) / 16, e).astype(np.float32)

        return crush(a) @ crush(b)

    ch = small(m=32, k=256)
    work = respond(ch, fp8ish)
    picks = all_rows(ch)[:20]
    v = judge(ch, 1e-6, work.root, 0.01, picks, work.open(picks), GENEROUS)
    assert not v.passed and len(v.failed_rows) >= 15


def test_skipped_product_is_caught_when_opened() -> None:
    ch = small()

    def lazy(a: np.ndarray, b: np.ndarray, perms: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
        for i, p in enumerate(perms):
            yield np.zeros((ch.m, ch.m), np.float32) if i == 1 else a @ b[p]

    work = respond(ch, products=lazy)
    picks = [(0, 3), (1, 5), (2, 0)]
    v = judge(ch, 1e-6, work.root, 0.01, picks, work.open(picks), GENEROUS)
    assert v.failed_rows == ((1, 5),)


def test_row_swapped_under_a_valid_proof_fails() -> None:
    ch = small()
    work = respond(ch, products=numpy_products)
    good = work.open([(0, 1), (0, 2)])
    swapped = RowOpening(0, 1, good[1].encoded, good[0].proof)
    checker = RowChecker(ch)
    assert checker.check(work.root, good[0]) is None
    assert "Merkle" in (checker.check(work.root, swapped) or "")
    wrong_index = RowOpening(0, 2, good[1].encoded, good[0].proof)
    assert checker.check(work.root, wrong_index) == "proof is for another leaf"
    truncated = RowOpening(0, 1, good[0].encoded[:-2], good[0].proof)
    assert checker.check(work.root, truncated) == "row has the wrong length"
    bad_proof = RowOpening(0, 1, good[0].encoded, MerkleProof(1, ch.leaf_count, ()))
    assert checker.check(work.root, bad_proof) is not None


def test_unopened_pick_and_late_root_fail() -> None:
    ch = small()
    work = respond(ch, products=numpy_products)
    picks = [(0, 0), (1, 1)]
    v = judge(ch, 1e-6, work.root, 0.01, picks, work.open(picks[:1]), GENEROUS)
    assert v.failed_rows == ((1, 1),)
    terms = TimingTerms(slack=1.4, allowance_s=0.0, digest_bytes_per_s=1e12)
    adv = 1e-6
    bound = time_bound(ch, adv, terms)
    assert math.isclose(bound, ch.flops / 1e6 * 1.4, rel_tol=1e-3)
    late = judge(ch, adv, work.root, bound * 1.01, picks, work.open(picks), terms)
    assert not late.passed and late.failed_rows == ()
    assert math.isclose(implied_tflops(ch, 2.0), ch.flops / 2e12)


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 8),
    k=st.integers(1, 24),
    reps=st.integers(1, 3),
    seed=st.binary(min_size=32, max_size=32),
    data=st.data(),
)
def test_soundness_honest_passes_and_any_corrupted_row_fails(
    m: int, k: int, reps: int, seed: bytes, data: st.DataObject
) -> None:
    ch = MatmulChallenge(seed, m=m, k=k, reps=reps)
    work = respond(ch, products=numpy_products)
    checker = RowChecker(ch)
    openings = work.open(all_rows(ch))
    assert all(checker.check(work.root, o) is None for o in openings)
    target = data.draw(st.sampled_from(openings))
    col = data.draw(st.integers(0, m - 1))
    vals = np.frombuffer(target.encoded, dtype="<f2").astype(np.float32).copy()
    want = checker.expected_row(target.rep, target.row)
    vals[col] += 0.1 * max(float(np.sqrt(np.mean(want**2))), 1.0)
    forged = RowOpening(target.rep, target.row, vals.astype("<f2").tobytes(), target.proof)
    assert checker.check(work.root, forged) is not None


def test_pick_rows_depend_on_root_and_entropy() -> None:
    ch = MatmulChallenge(SEED, m=64, k=8, reps=10)
    a = pick_rows(ch, b"\x01" * 32, b"e1", 12)
    assert len(set(a)) == 12 and all(0 <= i < 10 and 0 <= r < 64 for i, r in a)
    assert a != pick_rows(ch, b"\x02" * 32, b"e1", 12)
    assert a != pick_rows(ch, b"\x01" * 32, b"e2", 12)
    assert a == pick_rows(ch, b"\x01" * 32, b"e1", 12)


def test_openings_needed_meets_detection_for_minimal_skipper() -> None:
    s = openings_needed(0.99, slack=1.4, speed_factor=2.0)
    skip = 1 - 1.4 / 2
    assert 1 - (1 - skip) ** s >= 0.99 > 1 - (1 - skip) ** (s - 1)
    with pytest.raises(ChallengeError):
        openings_needed(0.99, slack=2.0)


def test_freivalds() -> None:
    gen = np.random.default_rng(1)
    a, b = gen.standard_normal((30, 20)), gen.standard_normal((20, 25))
    c = a @ b
    assert freivalds(a, b, c, 10, gen, 1e-9)
    c[4, 7] += 1e-3
    assert not freivalds(a, b, c, 20, gen, 1e-9)
    assert not freivalds(a, b, c[:, :5], 1, gen, 1e-9)


def test_malformed_challenges_are_refused() -> None:
    with pytest.raises(ChallengeError):
        MatmulChallenge(b"short", m=4, k=4, reps=1)
    with pytest.raises(ChallengeError):
        MatmulChallenge(SEED, m=0, k=4, reps=1)
    with pytest.raises(ChallengeError):
        respond(small())
    with pytest.raises(ChallengeError):
        respond(small(), lambda a, b: np.zeros((2, 2)))


def test_size_challenge_targets_the_compute_time() -> None:
    ch = size_challenge(SEED, advertised_tflops=100.0, compute_s=2.0, m=4096, k=8192)
    seconds = ch.flops / 100e12
    assert 2.0 <= seconds < 2.0 + 2 * 4096 * 4096 * 8192 / 100e12
    assert size_challenge(SEED, 1e6, 1.0, m=8, k=8).reps == 4096  # capped
    assert size_challenge(SEED, 1e-9, 1.5, m=8, k=8).reps == 2  # 1024 flops at 1000 flop/s
