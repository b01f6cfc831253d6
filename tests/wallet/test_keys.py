"""Wallet keystores: create, import, list, choose, unlock; passwords from file/env/prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
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
    kw.setdefault("foundry_keystore_dir", tmp_path / "foundry")  # never the real ~/.foundry
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


def cast_keystore(path: Path, password: str) -> LocalAccount:
    """A keystore as ``cast wallet new DIR NAME`` writes it: standard V3 JSON, no file
    suffix, and no plaintext address."""
    acct: LocalAccount = Account.create()
    keystore = Account.encrypt(acct.key, password, kdf="scrypt", iterations=2**12)
    del keystore["address"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keystore))
    return acct


def test_import_an_existing_keystore_keeps_its_ciphertext(tmp_path: Path) -> None:
    source = tmp_path / "cast" / "deployer"
    acct = cast_keystore(source, "cast-pw")
    s = settings(tmp_path, password=SecretStr("cast-pw"))
    entry = keys.import_keystore(s.keystore_dir, "deployer", source, SecretStr("cast-pw"))
    assert entry.address == acct.address and entry.path == s.keystore_dir / "deployer.json"
    stored = json.loads(entry.path.read_text())
    original = json.loads(source.read_text())
    assert stored["crypto"] == original["crypto"]  # not re-encrypted: the same password opens it
    assert stored["address"] == acct.address.lower().removeprefix("0x")
    assert (entry.path.stat().st_mode & 0o777) == 0o600
    # Listed with its address (no password), and usable by name.
    assert [(e.name, e.address) for e in keys.list_keys(s.keystore_dir)] == [
        ("deployer", acct.address)
    ]
    unlocked = keys.unlock(s.model_copy(update={"account": "deployer"}), None)
    assert unlocked.address == acct.address
    # The private key is never written in the clear.
    assert bytes(acct.key).hex() not in entry.path.read_text()


def test_importing_a_keystore_checks_password_format_and_name(tmp_path: Path) -> None:
    source = tmp_path / "cast" / "k"
    cast_keystore(source, "right")
    d = tmp_path / "keys"
    with pytest.raises(IdentityError, match="cannot decrypt"):
        keys.import_keystore(d, "k", source, SecretStr("wrong"))
    assert not (d / "k.json").exists()
    raw_key = tmp_path / "raw"
    raw_key.write_text("0x" + "22" * 32)
    with pytest.raises(IdentityError, match=r"not a V3 JSON keystore.*--private-key-file"):
        keys.import_keystore(d, "raw", raw_key, SecretStr("x"))
    keys.import_keystore(d, "k", source, SecretStr("right"))
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        keys.import_keystore(d, "k", source, SecretStr("right"))
    # A file whose recorded address is not its key's is refused.
    liar = json.loads(source.read_text()) | {"address": "33" * 20}
    (tmp_path / "liar.json").write_text(json.dumps(liar))
    with pytest.raises(IdentityError, match="says it holds"):
        keys.import_keystore(d, "liar", tmp_path / "liar.json", SecretStr("right"))


def test_foundry_keystore_folder_is_listed_and_usable_by_name(tmp_path: Path) -> None:
    s = settings(tmp_path, password=SecretStr("cast-pw"))
    acct = cast_keystore(s.foundry_keystore_dir / "castle", "cast-pw")  # type: ignore[operator]
    (s.foundry_keystore_dir / "notes.txt").write_text("not a keystore")  # type: ignore[operator]
    (s.foundry_keystore_dir / "junk").write_text("{}")  # type: ignore[operator]
    mine = keys.new_key(s.keystore_dir, "mine", FAST)
    entries = keys.all_keys(s)
    assert [(e.name, e.address) for e in entries] == [
        ("mine", mine.address),
        ("castle", None),  # cast does not record the address; unlocking finds it
    ]
    chosen = s.model_copy(update={"account": "castle"})
    assert keys.resolve_account(chosen).path == s.foundry_keystore_dir / "castle"  # type: ignore[operator]
    assert keys.unlock(chosen, None).address == acct.address
    assert keys.address_of(chosen, None) == acct.address
    # A wallet account shadows a Foundry one of the same name.
    cast_keystore(s.foundry_keystore_dir / "mine", "cast-pw")  # type: ignore[operator]
    assert [e.name for e in keys.all_keys(s)] == ["mine", "castle"]
    # Without the Foundry folder only the wallet's own accounts are offered.
    assert [e.name for e in keys.all_keys(s.model_copy(update={"foundry_keystore_dir": None}))] == [
        "mine"
    ]


def test_wallet_list_and_import_through_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gpumarket_cli import app

    source = tmp_path / "cast" / "deployer"
    acct = cast_keystore(source, "cast-pw")
    pw = tmp_path / "pw"
    pw.write_text("cast-pw\n")
    env = {
        "WALLET_KEYSTORE_DIR": str(tmp_path / "keys"),
        "WALLET_FOUNDRY_KEYSTORE_DIR": str(tmp_path / "cast"),
    }
    runner = CliRunner()
    listed = runner.invoke(app, ["wallet", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == [{"name": "deployer", "address": None, "path": str(source)}]
    both = ["wallet", "import", "x", "--keystore", str(source), "--private-key-file", str(pw)]
    assert runner.invoke(app, both, env=env).exit_code == 2
    args = ["wallet", "import", "dep", "--keystore", str(source), "--password-file", str(pw)]
    done = runner.invoke(app, args, env=env)
    assert done.exit_code == 0, done.output
    assert acct.address in done.stdout and bytes(acct.key).hex() not in done.output
    shown = runner.invoke(app, ["wallet", "address", "-a", "dep", "--json"], env=env)
    assert json.loads(shown.stdout) == {"address": acct.address}


def test_a_keystore_whose_recorded_address_is_not_its_key_is_refused(tmp_path: Path) -> None:
    """``wallet list`` shows the address a keystore records without unlocking it; a file
    that records someone else's address must not be used as that account."""
    s = settings(tmp_path, password=FAST)
    real = keys.new_key(s.keystore_dir, "mallory", FAST)
    victim = Account.create().address
    data = json.loads(real.path.read_text())
    data["address"] = victim.lower().removeprefix("0x")
    real.path.write_text(json.dumps(data))
    listed = {e.name: e.address for e in keys.list_keys(s.keystore_dir)}
    assert listed["mallory"] == victim  # what the file claims, before unlocking
    with pytest.raises(IdentityError, match=r"says it holds .* but its key is"):
        keys.unlock(s.model_copy(update={"account": "mallory"}), None)
