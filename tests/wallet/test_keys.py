"""Wallet keystores: create, import, list, choose, unlock; passwords from file/env/prompt."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from pydantic import SecretStr

from protocol.errors import ConfigError, IdentityError
from protocol.identity import Identity
from wallet import keys
from wallet.settings import WalletSettings

FAST = SecretStr("correct horse")


@pytest.fixture(autouse=True)
def _cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    # Unit tests only: the real cost (n=2**18) is exercised by the identity tests.
    for name in ("new_key", "import_key"):
        real = getattr(keys, name)
        monkeypatch.setattr(keys, name, lambda *a, _f=real, **k: _f(*a, scrypt_n=2**12, **k))


def settings(tmp_path: Path, **kw: object) -> WalletSettings:
    return WalletSettings(keystore_dir=tmp_path / "keys", **kw)  # type: ignore[arg-type]


def test_new_import_list_and_unlock(tmp_path: Path) -> None:
    s = settings(tmp_path, password=FAST)
    created = keys.new_key(s.keystore_dir, "alice", FAST)
    acct = Account.create()
    imported = keys.import_key(s.keystore_dir, "bob", acct.key.hex(), FAST)
    assert imported.address == acct.address
    assert [(e.name, e.address) for e in keys.list_keys(s.keystore_dir)] == [
        ("alice", created.address),
        ("bob", acct.address),
    ]
    unlocked = keys.unlock(s.model_copy(update={"account": "bob"}), None)
    assert isinstance(unlocked, Identity) and unlocked.address == acct.address
    # By address works too; the file is private to its owner.
    assert keys.resolve_account(s.model_copy(update={"account": created.address})).name == "alice"
    assert (created.path.stat().st_mode & 0o777) == 0o600


def test_choosing_an_account_explains_what_is_there(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with pytest.raises(IdentityError, match="gpumarket wallet new NAME"):
        keys.resolve_account(s)
    keys.new_key(s.keystore_dir, "a", FAST)
    keys.new_key(s.keystore_dir, "b", FAST)
    with pytest.raises(IdentityError, match=r"2 accounts .* choose one with --account \(a, b\)"):
        keys.resolve_account(s)
    with pytest.raises(IdentityError, match="no account 'c'"):
        keys.resolve_account(s.model_copy(update={"account": "c"}))


def test_password_sources_and_wrong_password(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file\n")
    s = settings(tmp_path, password_file=pw_file, password=SecretStr("from-env"))
    assert keys.read_password(s, None).get_secret_value() == "from-file"
    assert (
        keys.read_password(settings(tmp_path, password=SecretStr("e")), None).get_secret_value()
        == "e"
    )
    with pytest.raises(IdentityError, match="no password given"):
        keys.read_password(settings(tmp_path), None)
    answers = iter(["one", "two"])
    with pytest.raises(IdentityError, match="differ"):
        keys.read_password(settings(tmp_path), lambda _: next(answers), confirm=True)
    keys.new_key(s.keystore_dir, "x", SecretStr("right"))
    with pytest.raises(IdentityError, match="cannot decrypt"):
        keys.unlock(s, None)


def test_bad_names_and_existing_files_are_refused(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with pytest.raises(IdentityError, match=r"account name .\.\./evil."):
        keys.new_key(s.keystore_dir, "../evil", FAST)
    keys.new_key(s.keystore_dir, "dup", FAST)
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        keys.new_key(s.keystore_dir, "dup", FAST)


def test_missing_endpoint_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WALLET_RPC_URL or pass --devnet"):
        settings(tmp_path).need("rpc_url")
