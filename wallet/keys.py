"""The wallet's keystore directory: one encrypted V3 keystore per named account.

Accounts are ``NAME.json`` files in the wallet's directory, plus the suffix-less files
Foundry's ``cast wallet`` keeps in ``~/.foundry/keystores`` (same Web3 Secret Storage
format). Cast does not store the address in the file, so such an account's address is
known only once it is unlocked, or once it is imported with ``import_keystore`` (which
decrypts it once and records the address beside the unchanged ciphertext).

Passwords come from ``--password-file``, ``WALLET_PASSWORD`` or an interactive prompt
(never echoed), and never appear in output or logs; neither do private keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from protocol.errors import GpuMarketError, IdentityError
from protocol.files import write_atomic
from protocol.identity import (
    MAX_KEYSTORE_BYTES,
    SCRYPT_N,
    Identity,
    create_keystore,
    decrypt_keystore,
    import_private_key,
    load_keystore,
)
from protocol.ids import Address, parse_address
from wallet.settings import WalletSettings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_PASSWORD_FILE_BYTES = 4096


@dataclass(frozen=True)
class KeyEntry:
    """A keystore on disk; ``address`` is None for a cast keystore never unlocked here."""

    name: str
    address: Address | None
    path: Path

    def matches(self, wanted: str) -> bool:
        """Whether ``wanted`` is this account's name or (any case) its address."""
        return wanted == self.name or (
            self.address is not None and wanted.lower() == self.address.lower()
        )


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise IdentityError(f"account name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return name


def keystore_path(directory: Path, name: str) -> Path:
    return directory / f"{_check_name(name)}.json"


def read_password(
    settings: WalletSettings, prompt: Callable[[str], str] | None, *, confirm: bool = False
) -> SecretStr:
    """The password from a file, the environment, or the prompt, in that order."""
    if settings.password_file is not None:
        try:
            raw = settings.password_file.read_bytes()[: MAX_PASSWORD_FILE_BYTES + 1]
        except OSError as exc:
            raise IdentityError(
                f"cannot read password file {settings.password_file}: {exc.strerror}"
            ) from exc
        if len(raw) > MAX_PASSWORD_FILE_BYTES:
            raise IdentityError(f"password file {settings.password_file} is too large")
        return SecretStr(raw.decode().rstrip("\r\n"))
    if settings.password is not None:
        return settings.password
    if prompt is None:
        raise IdentityError(
            "no password given: use --password-file, set WALLET_PASSWORD, or run interactively"
        )
    first = prompt("Keystore password")
    if confirm and prompt("Repeat password") != first:
        raise IdentityError("the two passwords differ")
    if confirm and not first:
        raise IdentityError("an empty password is not allowed for a new keystore")
    return SecretStr(first)


def _read_keystore(path: Path) -> dict[str, object] | None:
    """The JSON of a V3 keystore file, or None for anything else."""
    try:
        if path.stat().st_size > MAX_KEYSTORE_BYTES:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("version") != 3:
        return None
    if not isinstance(data.get("crypto", data.get("Crypto")), dict):
        return None
    return data


def _stored_address(keystore: dict[str, object]) -> Address | None:
    raw = keystore.get("address")
    if not isinstance(raw, str):
        return None
    try:
        return parse_address("0x" + raw.removeprefix("0x"))
    except GpuMarketError:
        return None


def list_keys(directory: Path) -> list[KeyEntry]:
    """Every keystore in ``directory``: ``NAME.json`` files and suffix-less ``NAME`` files
    (Foundry's layout). No password is needed; a file without an address lists as None."""
    entries: dict[str, KeyEntry] = {}
    for path in sorted(directory.glob("*")) if directory.is_dir() else []:
        name = path.stem if path.suffix == ".json" else path.name
        if path.suffix not in ("", ".json") or not _NAME.match(name) or name in entries:
            continue
        keystore = _read_keystore(path)
        if keystore is not None and path.is_file():
            entries[name] = KeyEntry(name, _stored_address(keystore), path)
    return sorted(entries.values(), key=lambda e: e.name)


def all_keys(settings: WalletSettings) -> list[KeyEntry]:
    """The wallet's own accounts, then Foundry's whose names the wallet does not use."""
    entries = list_keys(settings.keystore_dir)
    foundry = settings.foundry_keystore_dir
    if foundry is not None and foundry.resolve() != settings.keystore_dir.resolve():
        taken = {e.name for e in entries}
        entries += [e for e in list_keys(foundry) if e.name not in taken]
    return entries


def new_key(
    directory: Path, name: str, password: SecretStr, *, scrypt_n: int = SCRYPT_N
) -> KeyEntry:
    path = keystore_path(directory, name)
    identity = create_keystore(path, password, scrypt_n=scrypt_n)
    return KeyEntry(name, identity.address, path)


def import_key(
    directory: Path, name: str, private_key: str, password: SecretStr, *, scrypt_n: int = SCRYPT_N
) -> KeyEntry:
    path = keystore_path(directory, name)
    identity = import_private_key(path, private_key, password, scrypt_n=scrypt_n)
    return KeyEntry(name, identity.address, path)


def import_keystore(directory: Path, name: str, source: Path, password: SecretStr) -> KeyEntry:
    """Copy an existing V3 keystore (e.g. one ``cast wallet new`` wrote) in as ``NAME.json``.

    It is decrypted once, to check the password and learn the address; the ciphertext is
    kept as it is (no re-encryption) and the address is recorded beside it, so listing
    the account needs no password afterwards.
    """
    path = keystore_path(directory, name)
    if path.exists():
        raise IdentityError(f"{path} exists; refusing to overwrite a keystore")
    keystore = _read_keystore(source)
    if keystore is None:
        raise IdentityError(
            f"{source} is not a V3 JSON keystore (as `cast wallet new` or geth write); "
            "for a raw hex key use --private-key-file"
        )
    identity = decrypt_keystore(keystore, password)
    stored = _stored_address(keystore)
    if stored is not None and stored.lower() != identity.address.lower():
        raise IdentityError(
            f"{source} says it holds {stored} but its key is {identity.address}; not imported"
        )
    keystore["address"] = identity.address.lower().removeprefix("0x")
    _write_private(path, json.dumps(keystore).encode())
    return KeyEntry(name, identity.address, path)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file readable by its owner only (write, fsync, rename)."""
    try:
        write_atomic(path, data)  # created 0600
    except OSError as exc:
        raise IdentityError(f"cannot write keystore {path}: {exc.strerror}") from exc


def resolve_account(settings: WalletSettings) -> KeyEntry:
    """The account named by ``--account``/``WALLET_ACCOUNT``, or the only one there is."""
    entries = all_keys(settings)
    if settings.account is not None:
        for entry in entries:
            if entry.matches(settings.account):
                return entry
        raise IdentityError(
            f"no account {settings.account!r} in {settings.keystore_dir}; "
            f"have: {', '.join(e.name for e in entries) or 'none'}"
        )
    if len(entries) == 1:
        return entries[0]
    if not entries:
        raise IdentityError(
            f"no keystore in {settings.keystore_dir}: create one with `gpumarket wallet new "
            "NAME`, or bring one with `gpumarket wallet import NAME --keystore FILE`"
        )
    raise IdentityError(
        f"{len(entries)} accounts in {settings.keystore_dir}; choose one with --account "
        f"({', '.join(e.name for e in entries)})"
    )


def unlock(settings: WalletSettings, prompt: Callable[[str], str] | None) -> Identity:
    entry = resolve_account(settings)
    identity = load_keystore(entry.path, read_password(settings, prompt))
    if entry.address is not None and entry.address.lower() != identity.address.lower():
        raise IdentityError(
            f"{entry.path} says it holds {entry.address} but its key is {identity.address}"
        )
    return identity


def address_of(settings: WalletSettings, prompt: Callable[[str], str] | None) -> Address:
    """The chosen account's address; a cast keystore that does not record it is unlocked."""
    entry = resolve_account(settings)
    return entry.address if entry.address is not None else unlock(settings, prompt).address
