"""The committed artifacts match the sources, and every custom error has a Python class."""

from __future__ import annotations

import json

from contracts import build, errors
from contracts.abi import all_abis


def test_artifacts_are_current() -> None:
    stale = build.stale_artifacts()
    assert not stale, f"run `python -m contracts.build`: stale artifacts {stale}"


def test_artifacts_hold_abi_and_bytecode() -> None:
    for name in build.CONTRACT_NAMES:
        data = json.loads((build.ARTIFACTS_DIR / f"{name}.json").read_text())
        assert data["bytecode"].startswith("0x") and len(data["bytecode"]) > 1000
        assert data["settings"]["evmVersion"] == "cancun"
        # EIP-170: the deployed code must fit 24,576 bytes
        assert (len(data["deployedBytecode"]) - 2) // 2 <= 24_576


def test_every_custom_error_has_a_class() -> None:
    table = errors.error_table()
    names = {item["name"] for abi in all_abis() for item in abi if item["type"] == "error"}
    assert names == {cls.__name__ for cls, _, _ in table.values()}
    assert len(names) >= 40


def test_revert_data_decodes_to_named_error_with_fields() -> None:
    from eth_abi import encode
    from eth_utils import keccak

    selector = keccak(text="WrongStatus(bytes32,uint8)")[:4]
    err = errors.decode_revert(selector + encode(["bytes32", "uint8"], [b"\x07" * 32, 3]))
    assert isinstance(err, errors.WrongStatus)
    assert err.fields == {"jobId": b"\x07" * 32, "status": 3}
    assert err.job_id == b"\x07" * 32 and err.status == 3  # type: ignore[attr-defined]
    assert "WrongStatus(jobId=0x0707" in str(err)
    unknown = errors.decode_revert(b"\xde\xad\xbe\xef")
    assert isinstance(unknown, errors.TransactionReverted)


def test_sources_hash_changes_with_sources(tmp_path, monkeypatch) -> None:
    before = build.sources_hash()
    src = tmp_path / "src"
    src.mkdir()
    for path in build.source_files():
        (src / path.name).write_bytes(path.read_bytes())
    (src / "JobMarket.sol").write_text((src / "JobMarket.sol").read_text() + "\n// edit\n")
    monkeypatch.setattr(build, "SRC_DIR", src)
    assert build.sources_hash() != before
    assert build.stale_artifacts() == list(build.CONTRACT_NAMES)


def test_the_bindings_call_only_functions_of_the_abi() -> None:
    """Every ``<contract>.functions.<name>(args)`` in chain.py and deploy.py exists in the
    artifact with that many inputs (a renamed or reshaped function fails here, not on a
    node)."""
    import ast

    inputs: dict[str, set[int]] = {}
    for abi in all_abis():
        for item in abi:
            if item["type"] == "function":
                inputs.setdefault(item["name"], set()).add(len(item["inputs"]))
    used: list[tuple[str, int]] = []
    for module in ("chain.py", "deploy.py"):
        tree = ast.parse((build.CONTRACTS_DIR / module).read_text())
        aliases = {  # f = self.market.functions
            t.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "functions"
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            if (isinstance(owner, ast.Attribute) and owner.attr == "functions") or (
                isinstance(owner, ast.Name) and owner.id in aliases
            ):
                used.append((node.func.attr, len(node.args)))
    assert len(used) > 35
    wrong = [(f, n) for f, n in used if n not in inputs.get(f, set())]
    assert not wrong, f"not in the ABI with that many inputs: {wrong}"


def test_the_fake_emits_the_abi_events() -> None:
    """Every event the in-memory market emits in a scenario touching every function has the
    name and the argument names, in order, that the decoder gives the artifacts' event."""
    from contracts.events import decoded_arg_names
    from tests.contracts.fake_scenario import run_every_function

    abi_events = {  # as EventDecoder presents them: words the contract packs are unpacked
        item["name"]: decoded_arg_names(item)
        for abi in all_abis()
        for item in abi
        if item["type"] == "event"
    }
    events = run_every_function()
    seen = {e.name for e in events}
    assert seen == set(abi_events), f"never emitted: {set(abi_events) - seen}"
    for e in events:
        assert list(e.args) == abi_events[e.name], e.name
