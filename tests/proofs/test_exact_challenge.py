"""The exact per-dtype challenge: an honest torch responder (on the CPU here, on the
provider's GPU in production) verifies on every dtype; lower precision, cheaper units,
forged digests and skipped rows fail."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from proofs.challenge import (
    CHALLENGE_DTYPES,
    EXACT_MAX_FLOPS,
    EXACT_MAX_INNER,
    SPECS,
    ExactChallenge,
    ExactOpening,
    ExactWork,
    decode_row,
    device_row_digests,
    digest_keys,
    digests_from_words,
    exact_inputs,
    exact_rows_a,
    row_words,
)
from proofs.challenge_check import (
    ExactChecker,
    ExactTiming,
    exact_time_bound,
    judge_exact,
    pick_exact_rows,
    round_to_bits,
    size_exact_challenge,
)
from proofs.errors import ChallengeError

SEED = bytes(range(32))
RELAXED = ExactTiming(slack=1.4, allowance_s=60.0)


def small(dtype: str, m: int = 48, k: int = EXACT_MAX_INNER, reps: int = 2) -> ExactChallenge:
    return ExactChallenge(SEED, dtype, m=m, k=k, reps=reps)


def every_row(ch: ExactChallenge) -> list[tuple[int, int]]:
    return [(i, r) for i in range(ch.reps) for r in range(ch.m)]


def run_judge(ch: ExactChallenge, work: ExactWork, picks: list[tuple[int, int]]) -> Any:
    return judge_exact(ch, 1.0, work.root, work.elapsed_s, picks, work.open(picks), RELAXED)


@pytest.mark.parametrize("dtype", CHALLENGE_DTYPES)
def test_honest_device_responder_passes_every_dtype(dtype: str) -> None:
    ch = small(dtype)
    work = device_row_digests(ch, "cpu")
    verdict = run_judge(ch, work, every_row(ch))
    assert verdict.passed, verdict.reasons
    assert not verdict.wrong_rows


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "tf32"])
def test_exact_dtypes_are_bit_exact_and_one_operand_needs_nine_bits(dtype: str) -> None:
    ch = small(dtype, reps=1)
    spec = SPECS[dtype]
    ia, ib = exact_inputs(ch)
    assert int(np.abs(ia).max()) == spec.a_max == 255  # beyond int8's 127: 9 signed bits
    assert int(np.abs(ib).max()) <= spec.b_max
    assert ch.k * spec.a_max * spec.b_max < 2**24  # every partial sum exact in fp32
    work = device_row_digests(ch, "cpu")
    checker = ExactChecker(ch)
    for opening in work.open(every_row(ch)):
        got = decode_row(ch, opening.encoded)
        assert np.array_equal(got, checker.expected_row(opening.rep, opening.row))


def test_digest_on_the_device_equals_the_specified_digest() -> None:
    ch = small("bf16", reps=1)
    work = device_row_digests(ch, "cpu")
    rows = np.stack([decode_row(ch, o.encoded) for o in work.open(every_row(ch))])
    assert np.array_equal(digests_from_words(row_words(ch, rows), digest_keys(ch)), work.digests)


def test_digest_is_not_linear_in_the_row() -> None:
    ch = small("tf32", m=64, reps=1)
    keys = digest_keys(ch)
    gen = np.random.default_rng(1)
    x, y = gen.integers(0, 1000, size=(2, 64))
    d = [int(v) for v in digests_from_words(np.stack([x, y, x + y, 2 * x]), keys)]
    p = (1 << 31) - 1
    lanes = [((v >> 32) % p, v & 0xFFFFFFFF) for v in d]
    zero = digests_from_words(np.zeros((1, 64), dtype=np.int64), keys)[0]
    z = (int(zero) >> 32, int(zero) & 0xFFFFFFFF)
    # an affine digest would satisfy d(x + y) = d(x) + d(y) - d(0) and d(2x) = 2 d(x) - d(0)
    assert lanes[2][0] != (lanes[0][0] + lanes[1][0] - z[0]) % p
    assert lanes[3][1] != (2 * lanes[0][1] - z[1]) % p


def _round_inputs_to_tf32(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    def tf32(x: torch.Tensor) -> torch.Tensor:
        bits = x.view(torch.int32)
        bits = (bits + 0xFFF + ((bits >> 13) & 1)) & ~0x1FFF  # RNE to 10 stored bits
        return bits.view(torch.float32)

    return tf32(a), tf32(b)


def test_fp32_claim_answered_in_tf32_precision_fails() -> None:
    ch = small("fp32")
    work = device_row_digests(ch, "cpu", tamper=_round_inputs_to_tf32)
    picks = pick_exact_rows(ch, work.root, b"entropy", 16)
    verdict = run_judge(ch, work, picks)
    assert verdict.wrong_rows and len(verdict.reasons) == 16
    assert all("fp32 row off by" in r for r in verdict.reasons)


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "tf32"])
def test_answer_with_int8_range_inputs_fails(dtype: str) -> None:
    ch = small(dtype)
    unit = 2.0 ** SPECS[dtype].a_shift

    def int8_a(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (a.float() * unit).clamp(-128, 127).div(unit).to(a.dtype), b

    work = device_row_digests(ch, "cpu", tamper=int8_a)
    picks = pick_exact_rows(ch, work.root, b"entropy", 16)
    verdict = run_judge(ch, work, picks)
    assert verdict.wrong_rows and len(verdict.reasons) == 16
    assert all("differ from the exact product" in r for r in verdict.reasons)


def _rebuilt(work: ExactWork, digests: np.ndarray) -> ExactWork:
    return ExactWork(work.challenge, digests, work.elapsed_s, work._reopen)


@pytest.mark.parametrize("dtype", CHALLENGE_DTYPES)
def test_forged_row_digest_fails_when_opened(dtype: str) -> None:
    ch = small(dtype, m=16)
    honest = device_row_digests(ch, "cpu")
    forged = honest.digests.copy()
    forged[5] ^= np.uint64(1)
    work = _rebuilt(honest, forged)
    verdict = run_judge(ch, work, every_row(ch))
    assert verdict.reasons == ("row (0, 5): row does not hash to the digest committed for it",)
    others = [p for p in every_row(ch) if p != (0, 5)]
    assert run_judge(ch, work, others).passed


def test_skipped_rows_fail_when_opened_and_pass_when_not() -> None:
    ch = small("bf16", m=16, reps=3)
    honest = device_row_digests(ch, "cpu")
    skipped = honest.digests.copy()
    skipped[ch.m : 2 * ch.m] = 0  # product 1 never computed

    def reopen(rep: int) -> np.ndarray:
        rows = honest._reopen(rep)
        return np.zeros_like(rows) if rep == 1 else rows

    work = ExactWork(ch, skipped, honest.elapsed_s, reopen)
    verdict = run_judge(ch, work, [(0, 3), (1, 7), (2, 0)])
    assert verdict.wrong_rows and len(verdict.reasons) == 1 and "(1, 7)" in verdict.reasons[0]
    assert run_judge(ch, work, [(0, 3), (2, 0)]).passed


def test_unopened_pick_and_late_answer_fail() -> None:
    ch = small("tf32", m=16)
    work = device_row_digests(ch, "cpu")
    picks = [(0, 1), (1, 2)]
    missing = judge_exact(ch, 1.0, work.root, 0.1, picks, work.open(picks[:1]), RELAXED)
    assert missing.wrong_rows and missing.reasons == ("row (1, 2): not opened",)
    bound = exact_time_bound(ch, 1.0, RELAXED)
    late = judge_exact(ch, 1.0, work.root, bound * 1.01, picks, work.open(picks), RELAXED)
    assert not late.passed and not late.wrong_rows and "bound" in late.reasons[0]
    on_time = judge_exact(ch, 1.0, work.root, bound * 0.99, picks, work.open(picks), RELAXED)
    assert on_time.passed


def test_round_to_bits_matches_hardware_conversions() -> None:
    gen = np.random.default_rng(3)
    units = np.concatenate(
        [gen.integers(-(2**24), 2**24, size=20000), np.arange(-600, 600), [2**24, 257, 259, 2049]]
    )
    as_f32 = torch.from_numpy(units.astype(np.float32))
    bf16 = as_f32.bfloat16().float().numpy().astype(np.int64)
    assert np.array_equal(round_to_bits(units, 8), bf16)
    fp16 = (as_f32 * 2.0**-9).half().float().mul(2.0**9).numpy().astype(np.int64)
    assert np.array_equal(round_to_bits(units, 11), fp16)


def test_sizing_targets_the_claim_within_bounds() -> None:
    ch = size_exact_challenge(SEED, "bf16", 800.0, compute_s=1.5)
    assert 1.0 <= ch.flops / 800e12 <= 2.0
    tiny = size_exact_challenge(SEED, "fp32", 1e-3, compute_s=1.5, m=1024)
    assert tiny.reps == 1
    assert size_exact_challenge(SEED, "bf16", 1e6).flops <= EXACT_MAX_FLOPS
    with pytest.raises(ChallengeError, match="out of range"):
        ExactChallenge(SEED, "bf16", m=64, k=EXACT_MAX_INNER + 1, reps=1)
    with pytest.raises(ChallengeError, match="unknown challenge dtype"):
        ExactChallenge(SEED, "int4", m=64, k=64, reps=1)
    with pytest.raises(ChallengeError, match="positive"):
        size_exact_challenge(SEED, "bf16", 0.0)


def test_precision_flags_are_off_during_the_work_and_restored() -> None:
    """The clock is read inside the timed part: the flags it sees are the ones in force."""
    matmul = torch.backends.cuda.matmul
    seen: list[tuple[bool, bool, bool]] = []

    def clock() -> float:
        flags = (
            matmul.allow_bf16_reduced_precision_reduction,
            matmul.allow_fp16_reduced_precision_reduction,
            matmul.allow_tf32,
        )
        seen.append(flags)
        return float(len(seen))

    saved = (
        matmul.allow_bf16_reduced_precision_reduction,
        matmul.allow_fp16_reduced_precision_reduction,
    )
    matmul.allow_bf16_reduced_precision_reduction = True
    matmul.allow_fp16_reduced_precision_reduction = True
    try:
        device_row_digests(small("bf16", m=16, reps=1), "cpu", clock=clock)
        device_row_digests(small("tf32", m=16, reps=1), "cpu", clock=clock)
        assert seen == [(False, False, False)] * 2 + [(False, False, True)] * 2
        assert matmul.allow_bf16_reduced_precision_reduction is True
    finally:
        matmul.allow_bf16_reduced_precision_reduction = saved[0]
        matmul.allow_fp16_reduced_precision_reduction = saved[1]


def test_opening_proofs_bind_the_leaf() -> None:
    ch = small("fp16", m=16, reps=3)
    work = device_row_digests(ch, "cpu")
    (o,) = work.open([(1, 4)])
    moved = ExactOpening(rep=2, row=4, encoded=o.encoded, group=o.group, proof=o.proof)
    checker = ExactChecker(ch)
    assert checker.check(work.root, moved) == "proof is for another leaf"
    assert "bytes, expected" in (
        checker.check(work.root, ExactOpening(1, 4, b"\0", o.group, o.proof)) or ""
    )


def test_tampered_leaf_digests_do_not_reach_the_root() -> None:
    ch = small("bf16", m=128, reps=1)
    work = device_row_digests(ch, "cpu")
    (o,) = work.open([(0, 70)])
    group = bytearray(o.group)
    group[0] ^= 1  # another row's digest under the same leaf
    bad = ExactOpening(o.rep, o.row, o.encoded, bytes(group), o.proof)
    checker = ExactChecker(ch)
    assert checker.check(work.root, o) is None
    assert checker.check(work.root, bad) == (
        "row digests or Merkle proof do not reach the committed root"
    )
    assert ch.leaf_count == 2 and o.proof.index == 1


def test_a_challenge_split_over_devices_commits_to_the_same_rows() -> None:
    """Each device computes its own consecutive products; together they are exactly the
    one-device answer, row for row, and every row opens true from the device that made it."""
    split = ExactChallenge(SEED, "bf16", m=48, k=256, reps=4, devices=2)
    whole = ExactChallenge(SEED, "bf16", m=48, k=256, reps=4)
    work = device_row_digests(split, ["cpu", "cpu"])
    assert np.array_equal(work.digests, device_row_digests(whole, "cpu").digests)
    assert [split.device_of(r) for r in range(4)] == [0, 0, 1, 1]
    verdict = run_judge(split, work, every_row(split))
    assert verdict.passed, verdict.reasons


def test_the_bound_is_one_devices_share_so_one_device_cannot_answer_for_two() -> None:
    """Two devices at the claim finish in the time of one share; a host with one device
    computes both shares in turn and needs twice the bound's compute."""
    split = ExactChallenge(SEED, "bf16", m=64, k=4096, reps=8, devices=2)
    share = ExactChallenge(SEED, "bf16", m=64, k=4096, reps=4)
    terms = ExactTiming(slack=1.4, allowance_s=0.0)
    assert exact_time_bound(split, 1.0, terms) == exact_time_bound(share, 1.0, terms)
    assert split.device_flops == share.flops
    sized = size_exact_challenge(SEED, "bf16", 800.0, compute_s=1.5, m=8192, devices=8)
    assert sized.devices == 8 and sized.reps % 8 == 0
    assert 1.0 <= sized.device_flops / 800e12 <= 2.0


def test_device_counts_are_checked() -> None:
    with pytest.raises(ChallengeError, match="divide"):
        ExactChallenge(SEED, "bf16", m=48, k=64, reps=3, devices=2)
    with pytest.raises(ChallengeError, match="devices=17"):
        ExactChallenge(SEED, "bf16", m=48, k=64, reps=17, devices=17)
    with pytest.raises(ChallengeError, match="for 2 devices, given 1"):
        device_row_digests(ExactChallenge(SEED, "bf16", m=48, k=64, reps=2, devices=2), "cpu")


@pytest.mark.parametrize("k", [1, 7, 64, 1000])
def test_a_row_of_a_drawn_alone_is_that_row_of_the_whole(k: int) -> None:
    """The verifier draws only the rows it opens; any row, at any k, odd or even, must be
    the provider's row (Philox's counter jumps to it)."""
    ch = ExactChallenge(SEED, "bf16", m=48, k=k, reps=1)
    ia, _ = exact_inputs(ch)
    rows = [0, 1, 2, 5, 13, 46, 47]
    assert np.array_equal(exact_rows_a(ch, rows), ia[rows])


def test_digests_of_a_product_in_blocks_of_rows_equal_the_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The device digests a big product a block of rows at a time (bounded temporaries);
    the blocks must give exactly the digests of the whole."""
    from proofs import challenge as module

    ch = ExactChallenge(SEED, "fp16", m=48, k=64, reps=2)
    whole = device_row_digests(ch, "cpu").digests
    monkeypatch.setattr(module, "DIGEST_BLOCK", 5 * 48)  # 5 rows a block: 10 blocks, 3 left
    assert np.array_equal(device_row_digests(ch, "cpu").digests, whole)
