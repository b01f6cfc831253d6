"""Job specs: the documented example parses; every kind of mistake names its field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiformats import CID, multihash

from protocol.errors import SpecError
from protocol.fields import normalize_cid as cid_of_text
from protocol.registry import MAX_SPEC_BYTES
from protocol.spec import ContainerRuntime, JobSpec, ToleranceCompare, TorchRuntime
from protocol.spec_io import (
    InvalidSpec,
    canonical_spec,
    check_local_inputs,
    load_spec,
    parse_spec,
    spec_from_canonical,
)
from protocol.units import format_duration, format_size, parse_duration, parse_size
from tests.protocol.factories import cid_of

DATA_CID = cid_of(b"data")

EXAMPLE = f"""
name: seeded-matmul
runtime: {{kind: torch, entrypoint: main.py}}
inputs:
  - {{name: code, path: ./examples/matmul/}}
  - {{name: data, cid: {DATA_CID}}}
resources: {{gpus: 1, gpu_memory_gb: 16, min_tflops: {{bf16: 100}}}}
verification: {{redundancy: 2, compare: exact}}
price: {{max_per_provider: "2.50"}}
timeout: 10m
max_output: 1GiB
"""

MINIMAL = "name: x\nruntime: {kind: torch, entrypoint: main.py}\nprice: {max_per_provider: 1}\n"


def test_documented_example_parses() -> None:
    spec = parse_spec(EXAMPLE)
    assert spec.name == "seeded-matmul"
    assert spec.runtime == TorchRuntime(kind="torch", entrypoint="main.py")
    assert [i.name for i in spec.inputs] == ["code", "data"]
    assert spec.inputs[0].path == "./examples/matmul/"
    assert spec.inputs[1].cid == DATA_CID
    assert spec.resources.gpus == 1
    assert spec.resources.gpu_memory_gb == 16.0
    assert spec.resources.min_tflops.as_dict() == {"bf16": 100.0}
    assert spec.verification.redundancy == 2
    assert spec.verification.compare == "exact"
    assert spec.price.max_per_provider == 2_500_000
    assert spec.timeout == 600
    assert spec.max_output == 2**30
    assert not spec.is_resolved


def test_defaults_of_a_minimal_spec() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.inputs == ()
    assert spec.outputs == "outputs"
    assert spec.resources.gpus == 0
    assert spec.verification.redundancy == "auto"
    assert spec.verification.compare == "exact"
    assert spec.timeout == 600
    assert spec.billed_duration_s == 600
    assert spec.is_resolved


def test_container_runtime_and_tolerance_compare() -> None:
    spec = parse_spec(
        "name: train\n"
        "runtime:\n"
        "  kind: container\n"
        "  image: ghcr.io/acme/train:1.2@sha256:" + "ab" * 32 + "\n"
        "  command: [python, train.py, --epochs, '3']\n"
        "verification: {redundancy: auto, compare: {tolerance: {rtol: 1e-5, atol: 1e-8}}}\n"
        "price: {max_per_provider: 0.25}\n"
        "expected_duration: 90s\n"
        "timeout: 1h30m\n"
    )
    assert isinstance(spec.runtime, ContainerRuntime)
    assert spec.runtime.command == ("python", "train.py", "--epochs", "3")
    compare = spec.verification.compare
    assert isinstance(compare, ToleranceCompare)
    assert (compare.tolerance.rtol, compare.tolerance.atol) == (1e-5, 1e-8)
    assert spec.timeout == 5400
    assert spec.billed_duration_s == 90
    assert spec.price.max_per_provider == 250_000


def test_canonical_form_round_trips_and_is_order_independent() -> None:
    spec = parse_spec(EXAMPLE)
    data = canonical_spec(spec)
    assert spec_from_canonical(data) == spec
    assert parse_spec(data) == spec  # canonical JSON is also valid YAML input
    reordered = "\n".join(reversed(EXAMPLE.strip().split("\n")[5:])) + "\n"
    reordered += "\n".join(EXAMPLE.strip().split("\n")[:5]) + "\n"
    assert canonical_spec(parse_spec(reordered)) == data
    assert b'"timeout":"10m"' in data and b'"max_per_provider":"2.5"' in data


def test_with_input_cids_resolves_path_inputs() -> None:
    spec = parse_spec(EXAMPLE)
    resolved = spec.with_input_cids({"code": cid_of(b"code")})
    assert resolved.is_resolved
    assert resolved.input_cids() == {"code": cid_of(b"code"), "data": DATA_CID}
    assert canonical_spec(resolved) != canonical_spec(spec)


def test_specs_are_frozen() -> None:
    spec = parse_spec(MINIMAL)
    with pytest.raises(Exception, match="frozen"):
        spec.name = "y"


def _with(extra: str, base: str = MINIMAL) -> str:
    return base + extra


INVALID = [
    # (yaml, path, reason fragment)
    (_with("resourcs: {gpus: 1}\n"), "resourcs", "did you mean 'resources'?"),
    (_with("resources: {gpu: 1}\n"), "resources.gpu", "did you mean 'gpus'?"),
    (_with("resources: {min_tflops: {fp64: 1}}\n"), "resources.min_tflops.fp64", "unknown field"),
    (_with("verification: {compare: {tolerance: {rtoll: 1}}}\n"),
     "verification.compare.tolerance.rtoll", "did you mean 'rtol'?"),
    (MINIMAL.replace("name: x\n", ""), "name", "required"),
    ("name: x\nprice: {max_per_provider: 1}\n", "runtime", "required"),
    ("name: x\nruntime: {kind: torch, entrypoint: a.py}\n", "price", "required"),
    (MINIMAL.replace("name: x", "name: ../etc"), "name", "should match pattern"),
    (MINIMAL.replace("name: x", "name: " + "a" * 65), "name", "at most 64"),
    (MINIMAL.replace("name: x", "name: 5"), "name", "valid string"),
    (MINIMAL.replace("kind: torch", "kind: bash"), "runtime.kind", "unknown runtime kind 'bash'"),
    (MINIMAL.replace("kind: torch, ", ""), "runtime.kind", "needs kind"),
    (MINIMAL.replace("main.py", "../main.py"), "runtime.entrypoint", "'..'"),
    (MINIMAL.replace("main.py", "/main.py"), "runtime.entrypoint", "relative"),
    (MINIMAL.replace("main.py", "main.sh"), "runtime.entrypoint", ".py file"),
    (MINIMAL.replace("entrypoint: main.py", f"image: 'x@sha256:{'1' * 64}', command: []")
     .replace("torch", "container"), "runtime.command", "at least 1 item"),
    (MINIMAL.replace("entrypoint: main.py", "image: 'a b', command: [x]").replace(
        "torch", "container"), "runtime.image", "pattern"),
    (MINIMAL.replace("entrypoint: main.py", "image: 'acme/train:1.2', command: [x]").replace(
        "torch", "container"), "runtime.image", "pinned by digest"),
    (MINIMAL.replace("entrypoint: main.py", f"image: 'acme/t@sha256:{'0' * 63}', command: [x]")
     .replace("torch", "container"), "runtime.image", "pinned by digest"),
    (_with("inputs: [{name: a}]\n"), "inputs.0", "exactly one of 'path' or 'cid'"),
    (_with(f"inputs: [{{name: a, path: x, cid: {DATA_CID}}}]\n"), "inputs.0", "exactly one"),
    (_with("inputs: [{name: a, cid: nope}]\n"), "inputs.0.cid", "not a CID"),
    (_with("inputs: [{name: .., path: x}]\n"), "inputs.0.name", "pattern"),
    (_with("inputs: [{name: a, path: x}, {name: a, path: y}]\n"), "inputs", "repeated: a"),
    (_with("inputs: [" + ", ".join(f"{{name: i{n}, path: x}}" for n in range(65)) + "]\n"),
     "inputs", "at most 64"),
    (_with("outputs: ../up\n"), "outputs", "'..'"),
    (_with("resources: {gpus: -1}\n"), "resources.gpus", "greater than or equal to 0"),
    (_with("resources: {gpus: 17}\n"), "resources.gpus", "less than or equal to 16"),
    (_with("resources: {gpus: true}\n"), "resources.gpus", "valid integer"),
    (_with("resources: {gpus: 1.5}\n"), "resources.gpus", "valid integer"),
    (_with("resources: {gpu_memory_gb: 8}\n"), "resources.gpu_memory_gb", "needs gpus >= 1"),
    (_with("resources: {gpus: 1, min_tflops: {bf16: 0}}\n"), "resources.min_tflops.bf16",
     "greater than 0"),
    (_with("resources: {gpus: 1, min_tflops: {bf16: .inf}}\n"), "resources.min_tflops.bf16",
     "finite number"),
    (_with("verification: {redundancy: 0}\n"), "verification.redundancy", "between 1 and 5"),
    (_with("verification: {redundancy: 6}\n"), "verification.redundancy", "between 1 and 5"),
    (_with("verification: {redundancy: lots}\n"), "verification.redundancy", "'auto'"),
    (_with("verification: {compare: fuzzy}\n"), "verification.compare", "must be 'exact' or"),
    (_with("verification: {compare: {tolerance: {rtol: 0, atol: 0}}}\n"),
     "verification.compare.tolerance", "use compare: exact"),
    (_with("verification: {compare: {tolerance: {rtol: 2}}}\n"),
     "verification.compare.tolerance.rtol", "less than or equal to 1"),
    (MINIMAL.replace("max_per_provider: 1", "max_per_provider: '0'"), "price.max_per_provider",
     "more than 0"),
    (MINIMAL.replace("max_per_provider: 1", "max_per_provider: '-1'"), "price.max_per_provider",
     "non-negative"),
    (MINIMAL.replace("max_per_provider: 1", "max_per_provider: '0.0000001'"),
     "price.max_per_provider", "more than 6 decimals"),
    (MINIMAL.replace("max_per_provider: 1", "max_per_provider: '2000000'"),
     "price.max_per_provider", "at most"),
    (MINIMAL.replace("max_per_provider: 1", "max_per_provider: two"), "price.max_per_provider",
     "not a token amount"),
    (_with("timeout: 10y\n"), "timeout", "not a duration"),
    (_with("timeout: 0s\n"), "timeout", "between 1s and 7d"),
    (_with("timeout: 8d\n"), "timeout", "between 1s and 7d"),
    (_with("timeout: 30m1h\n"), "timeout", "largest first"),
    (_with("expected_duration: 2h\n"), "expected_duration", "must not exceed timeout"),
    (_with("max_output: 1PiB\n"), "max_output", "not a size"),
    (_with("max_output: 65GiB\n"), "max_output", "between 1B and 64GiB"),
    (_with("max_output: 0.5B\n"), "max_output", "whole number of bytes"),
    (_with("version: 2\n"), "version", "Input should be 1"),
    (MINIMAL.replace("main.py}", "main.py, packages: {numpy: 1.2}}"), "runtime.packages.numpy",
     "must be text: quote it"),
    (MINIMAL.replace("main.py}", "main.py, packages: {numpy: '=>1'}}"), "runtime.packages.numpy",
     "not a version specifier"),
    (MINIMAL.replace("main.py}", "main.py, packages: {'a b': ''}}"),
     "runtime.packages.a b.[key]", "not a package name"),
    (MINIMAL.replace("main.py}", "main.py, packages: {Foo_Bar: '', foo-bar: ''}}"),
     "runtime.packages", "'Foo_Bar' and 'foo-bar' name the same package"),
    (MINIMAL.replace("main.py}", "main.py, packages: {"
                     + ", ".join(f"p{n}: ''" for n in range(33)) + "}}"),
     "runtime.packages", "at most 32"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "path", "fragment"), INVALID)
def test_invalid_spec_names_field_and_reason(text: str, path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert info.value.path == path
    assert fragment in info.value.reason
    assert str(info.value).startswith(f"{path}: ")


def _cid_input_spec(cid: object) -> str:
    return _with(f"inputs: [{{name: code, path: x}}, {{name: data, cid: {cid}}}]\n")


UNVERIFIABLE_CIDS = [
    # (CID, reason fragment): well-formed CIDs whose content no provider can check.
    (CID("base32", 1, "raw", multihash.digest(b"data", "sha3-256")), "sha3-256 is not sha2-256"),
    (CID("base58btc", 1, "dag-pb", multihash.digest(b"data", "blake2b-256")),
     "blake2b-256 is not sha2-256"),
    (CID("base32", 1, "raw", multihash.digest(b"data", "sha2-256", size=20)), "not sha2-256"),
    (CID("base32", 1, "dag-cbor", multihash.digest(b"data", "sha2-256")),
     "dag-cbor is neither raw nor dag-pb"),
    (CID("base32", 1, "dag-json", multihash.digest(b"data", "sha2-256")), "neither raw nor dag-pb"),
]  # fmt: skip


@pytest.mark.parametrize(("cid", "fragment"), UNVERIFIABLE_CIDS)
def test_input_cid_that_cannot_be_verified_is_refused(cid: CID, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_cid_input_spec(cid))
    assert info.value.path == "inputs.1.cid"
    assert fragment in info.value.reason and cid.encode("base32") in info.value.reason
    # The canonical JSON a coordinator reads is checked the same way.
    resolved = parse_spec(_cid_input_spec(DATA_CID))
    tampered = canonical_spec(resolved).replace(DATA_CID.encode(), str(cid).encode())
    with pytest.raises(SpecError, match=r"^inputs\.1\.cid: "):
        spec_from_canonical(tampered)


def test_verifiable_input_cids_are_accepted_in_any_text_form() -> None:
    digest = multihash.digest(b"data", "sha2-256")
    v0 = CID("base58btc", 0, "dag-pb", digest)
    for cid in (v0, CID("base58btc", 1, "raw", digest), CID("base32", 1, "dag-pb", digest)):
        spec = parse_spec(_cid_input_spec(cid))
        assert spec.input_cids()["data"] == cid_of_text(str(cid))


def test_every_problem_is_listed() -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_spec("name: ../x\nruntime: {kind: torch, entrypoint: a.sh}\n")
    paths = [path for path, _ in info.value.problems]
    assert paths == ["name", "runtime.entrypoint", "price"]
    assert "(and 2 more problems)" in info.value.reason


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: [unclosed\n", "malformed YAML at line 2, column 1"),
        ("name: x\n  bad: indent\n", "malformed YAML at line 2, column 6"),
        ("a: &x [1]\nb: *x\n", "aliases are not allowed (line 2)"),
        ("name: x\nname: y\n", "duplicate key 'name' at line 2, column 1"),
        ("- just\n- a list\n", "must be a mapping"),
        ("", "must be a mapping"),
        ("x: " + "[" * 20 + "]" * 20 + "\n", "nests deeper than 16"),
        ("x: !!python/object:os.system ls\n", "malformed YAML"),
    ],
)
def test_unreadable_documents_are_spec_errors(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert info.value.path == ""
    assert fragment in info.value.reason


def test_size_limits(tmp_path: Path) -> None:
    huge = MINIMAL + "#" * MAX_SPEC_BYTES
    with pytest.raises(SpecError, match="limit is"):
        parse_spec(huge)
    file = tmp_path / "job.yaml"
    file.write_text(huge)
    with pytest.raises(SpecError, match="limit is"):
        load_spec(file)
    with pytest.raises(SpecError, match="not UTF-8"):
        parse_spec(b"name: \xff\n")
    with pytest.raises(SpecError, match="limit is"):
        spec_from_canonical(b"{" + b" " * MAX_SPEC_BYTES + b"}")


def test_load_spec_and_local_inputs(tmp_path: Path) -> None:
    (tmp_path / "examples" / "matmul").mkdir(parents=True)
    file = tmp_path / "job.yaml"
    file.write_text(EXAMPLE)
    spec = load_spec(file)
    assert check_local_inputs(spec, tmp_path) == {
        "code": (tmp_path / "examples" / "matmul").resolve()
    }
    with pytest.raises(SpecError) as info:
        check_local_inputs(spec, tmp_path / "elsewhere")
    assert info.value.path == "inputs.0.path"
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "absent.yaml")


def test_yaml_floats_without_a_dot_are_numbers() -> None:
    spec = parse_spec(_with("verification: {compare: {tolerance: {rtol: 1e-5, atol: 2E-8}}}\n"))
    compare = spec.verification.compare
    assert isinstance(compare, ToleranceCompare)
    assert compare.tolerance.rtol == 1e-5 and compare.tolerance.atol == 2e-8


@given(st.integers(min_value=0, max_value=10**9))
def test_durations_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=2**50))
def test_sizes_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


@pytest.mark.parametrize(
    ("text", "value"),
    [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), (45, 45)],
)
def test_duration_spellings(text: str | int, value: int) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("1GiB", 2**30), ("512MiB", 2**29), ("1.5GB", 1_500_000_000), ("100B", 100), (7, 7)],
)
def test_size_spellings(text: str | int, value: int) -> None:
    assert parse_size(text) == value


def test_example_specs_in_the_repo_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "examples"
    specs = [p for p in root.rglob("*.yaml")] if root.exists() else []
    for path in specs:
        assert isinstance(load_spec(path), JobSpec), os.fspath(path)


def test_packages_are_part_of_a_torch_runtime() -> None:
    text = MINIMAL.replace("main.py}", "main.py, packages: {numpy: '>=1.26,<3', tqdm: ''}}")
    spec = parse_spec(text)
    assert isinstance(spec.runtime, TorchRuntime)
    assert spec.runtime.packages == {"numpy": ">=1.26,<3", "tqdm": ""}
    assert spec_from_canonical(canonical_spec(spec)) == spec
    assert parse_spec(MINIMAL).runtime == TorchRuntime(kind="torch", entrypoint="main.py")
