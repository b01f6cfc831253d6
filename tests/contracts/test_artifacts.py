"""The committed artifacts match the sources, and every custom error has a Python class."""

from __future__ import annotations

import json

from contracts import build, errors
from contracts.abi import load_artifact


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
    names = {
        item["name"]
        for name in build.CONTRACT_NAMES
        for item in load_artifact(name).abi
        if item["type"] == "error"
    }
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
