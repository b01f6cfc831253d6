"""The coordinator's settings name their own variables (the shared base,
contracts.settings.ChainSettings, formats every error with the deployable's prefix)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coordinator.settings import load_settings
from protocol.errors import ConfigError
from protocol.ids import parse_address

ADDRESS = "0x" + "22" * 20


@pytest.fixture()
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith(("COORDINATOR_", "GPUMARKET_")):
            monkeypatch.delenv(key)
    return monkeypatch


def test_missing_settings_name_the_coordinator_variables(no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv("COORDINATOR_RPC_URL", "http://127.0.0.1:8545")
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert text.startswith("invalid coordinator settings: ")
    for name in ("COORDINATOR_MARKET_ADDRESS", "COORDINATOR_IPFS_API", "COORDINATOR_DATA_DIR"):
        assert f"{name} is not set" in text
    assert "COORDINATOR_RPC_URL" not in text and "PROVIDER_" not in text


def test_a_bad_address_and_a_missing_password_say_what_to_set(
    tmp_path: Path, no_env: pytest.MonkeyPatch
) -> None:
    given = {
        "rpc_url": "http://x",
        "market_address": ADDRESS,
        "registry_address": ADDRESS,
        "token_address": ADDRESS,
        "ipfs_api": "http://y",
        "data_dir": tmp_path,
        "keystore": tmp_path / "k.json",
    }
    with pytest.raises(ConfigError, match="COORDINATOR_TOKEN_ADDRESS: "):
        load_settings(**{**given, "token_address": "0x12"})
    settings = load_settings(**given)
    assert settings.market == parse_address(ADDRESS)
    with pytest.raises(ConfigError, match=r"PASSWORD_FILE \(or COORDINATOR_PASSWORD\)"):
        settings.identity()
    (tmp_path / "pw").write_text("s3cret\n")
    with_file = load_settings(**given, password_file=tmp_path / "pw")
    assert with_file.keystore_password().get_secret_value() == "s3cret"
