from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from proofs.compare import (
    ComparePolicy,
    NumericTolerance,
    compare_outputs,
    exact_groups,
    group_results,
    majority,
)
from proofs.errors import ArtifactFormatError
from proofs.tensorfiles import encode_safetensors, parse_safetensors

TOL = ComparePolicy(NumericTolerance(rtol=1e-4, atol=1e-6))


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def bf16(values: np.ndarray) -> bytes:
    """safetensors bytes of one BF16 tensor holding ``values`` (truncated to bf16)."""
    bits = (np.asarray(values, dtype=np.float32).view(np.uint32) >> 16).astype("<u2")
    f32 = encode_safetensors({"t": np.zeros(values.shape, dtype=np.float32)})
    n = int.from_bytes(f32[:8], "little")
    header = f32[8 : 8 + n].replace(b'"F32"', b'"BF16"')
    end = bits.nbytes
    header = header.replace(f"[0,{4 * values.size}]".encode(), f"[0,{end}]".encode())
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + bits.tobytes()


finite = hnp.arrays(
    np.float64,
    hnp.array_shapes(max_dims=3, max_side=6),
    elements=st.floats(-1e6, 1e6, allow_nan=False),
)


@given(finite)
def test_an_output_agrees_with_itself_and_small_noise(a: np.ndarray) -> None:
    noisy = a * (1 + 1e-7)
    rep = compare_outputs({"x.npy": npy(a)}, {"x.npy": npy(noisy)}, TOL)
    assert rep.agree, rep


@given(finite, st.data())
def test_a_large_change_is_reported_where_it_happens(a: np.ndarray, data: st.DataObject) -> None:
    if a.size == 0:
        return
    flat = data.draw(st.integers(0, a.size - 1))
    b = a.copy()
    idx = np.unravel_index(flat, a.shape)
    b[idx] += 1.0 + abs(b[idx])
    rep = compare_outputs({"x.npy": npy(a)}, {"x.npy": lambda: npy(b)}, TOL)
    (d,) = rep.differences
    assert (d.kind, d.mismatches, d.first_index) == ("values", 1, tuple(int(i) for i in idx))
    assert d.max_abs > 0.9


@given(finite, finite)
def test_comparison_is_symmetric(a: np.ndarray, b: np.ndarray) -> None:
    fa, fb = {"x.npy": npy(a)}, {"x.npy": npy(b)}
    assert compare_outputs(fa, fb, TOL).agree == compare_outputs(fb, fa, TOL).agree


def test_structure_must_match() -> None:
    a = {"x.npy": npy(np.zeros(3)), "y.txt": b"hi"}
    rep = compare_outputs(a, {"x.npy": npy(np.zeros(4)), "z.txt": b"hi"}, TOL)
    kinds = {(d.path, d.kind) for d in rep.differences}
    assert kinds == {("y.txt", "missing"), ("z.txt", "extra"), ("x.npy", "shape")}
    rep = compare_outputs(a, {"x.npy": npy(np.zeros(3, np.float32)), "y.txt": b"hi"}, TOL)
    assert [d.kind for d in rep.differences] == ["dtype"]


def test_special_values() -> None:
    a = np.array([np.nan, np.inf, -np.inf, 1.0])
    assert compare_outputs({"x.npy": npy(a)}, {"x.npy": npy(a.copy() * 1.0)}, TOL).agree
    for b in ([1.0, np.inf, -np.inf, 1.0], [np.nan, -np.inf, -np.inf, 1.0]):
        rep = compare_outputs({"x.npy": npy(a)}, {"x.npy": npy(np.array(b))}, TOL)
        assert not rep.agree and rep.differences[0].max_abs == float("inf")


def test_integers_and_text_compare_exactly() -> None:
    ints = compare_outputs({"i.npy": npy(np.array([1, 2]))}, {"i.npy": npy(np.array([1, 3]))}, TOL)
    assert ints.differences[0].mismatches == 1
    text = compare_outputs({"log": b"abcd"}, {"log": b"abXd"}, TOL)
    (d,) = text.differences
    assert (d.kind, d.mismatches, d.first_index) == ("bytes", 1, (2,))


def test_per_file_override_and_exact_policy() -> None:
    a, b = {"x.npy": npy(np.array([1.0]))}, {"x.npy": npy(np.array([1.01]))}
    loose = ComparePolicy(
        NumericTolerance(1e-9, 0), per_file=(("*.npy", NumericTolerance(0.1, 0)),)
    )
    assert compare_outputs(a, b, loose).agree
    assert not compare_outputs(a, b, ComparePolicy(default=None)).agree


def test_safetensors_names_values_and_bf16() -> None:
    t: dict[str, np.ndarray] = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "n": np.array([7], dtype=np.int64),
    }
    a = {"m.safetensors": encode_safetensors(t, {"k": "v"})}
    close = {"w": t["w"] * (1 + 1e-6), "n": t["n"]}
    assert compare_outputs(a, {"m.safetensors": encode_safetensors(close, {"k": "v"})}, TOL).agree
    renamed = {"W": t["w"], "n": t["n"]}
    rep = compare_outputs(a, {"m.safetensors": encode_safetensors(renamed, {"k": "v"})}, TOL)
    assert [d.kind for d in rep.differences] == ["names"]
    far = {"w": t["w"] + np.array([[0, 0, 0], [0, 5, 0]], np.float32), "n": t["n"]}
    rep = compare_outputs(a, {"m.safetensors": encode_safetensors(far, {"k": "v"})}, TOL)
    (d,) = rep.differences
    assert (d.tensor, d.first_index, d.max_abs) == ("w", (1, 1), 5.0)
    v = np.array([1.5, -2.25, 3.0], dtype=np.float32)
    parsed = parse_safetensors("b.safetensors", bf16(v)).tensors["t"]
    assert parsed.declared_dtype == "BF16" and np.array_equal(parsed.array, v)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        (10**9).to_bytes(8, "little") + b"{}",
        (2).to_bytes(8, "little") + b"[]",
        (4).to_bytes(8, "little") + b"nope",
        # 200,000 levels: an unbounded C parser overflows the stack and kills the process
        (400_000).to_bytes(8, "little") + b"[" * 200_000 + b"]" * 200_000,
    ],
)
def test_malformed_safetensors_headers_are_refused(blob: bytes) -> None:
    with pytest.raises(ArtifactFormatError):
        parse_safetensors("m.safetensors", blob)


@pytest.mark.parametrize(
    "entry",
    [
        b'{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}',
        b'{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,400]}}',
        b'{"t":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}',
        b'{"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}',
        b'{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}',
    ],
)
def test_inconsistent_tensor_entries_are_refused(entry: bytes) -> None:
    blob = len(entry).to_bytes(8, "little") + entry + b"\x00" * 8
    with pytest.raises(ArtifactFormatError):
        parse_safetensors("m.safetensors", blob)


def test_unparseable_numeric_file_is_a_difference_not_a_crash() -> None:
    rep = compare_outputs({"x.npy": b"junk"}, {"x.npy": npy(np.zeros(1))}, TOL)
    assert [d.kind for d in rep.differences] == ["parse"]


def test_grouping_majority_and_lazy_loading() -> None:
    base = np.linspace(0, 1, 50)
    calls: list[str] = []

    def loader(name: str, arr: np.ndarray):
        def load() -> bytes:
            calls.append(name)
            return npy(arr)

        return load

    results = {
        "p1": {"o.npy": loader("p1", base)},
        "p2": {"o.npy": loader("p2", base + 1e-9)},
        "p3": {"o.npy": loader("p3", base + 0.5)},
        "p4": {"o.npy": loader("p4", base)},
    }
    groups = group_results(results, TOL, cids={"p1": "c1", "p4": "c1", "p2": "c2", "p3": "c3"})
    assert groups == [["p1", "p2", "p4"], ["p3"]]
    assert majority(groups, 4) == ["p1", "p2", "p4"]
    assert sorted(calls) == ["p1", "p2", "p3"]  # p4 matched p1 by CID, never loaded
    assert majority([["a"], ["b"]], 2) is None


def test_grouping_needs_agreement_with_every_member() -> None:
    tol = ComparePolicy(NumericTolerance(rtol=0, atol=1.0))
    res = {k: {"o.npy": npy(np.array([v]))} for k, v in (("a", 0.0), ("b", 0.9), ("c", 1.8))}
    # a~b and b~c but not a~c: c must not join a's class.
    assert group_results(res, tol) == [["a", "b"], ["c"]]


def test_exact_groups() -> None:
    assert exact_groups({"a": "x", "b": "y", "c": "x"}) == [["a", "c"], ["b"]]
