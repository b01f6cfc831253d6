"""The wallet's keystore directory: one encrypted V3 keystore per named account.

Passwords come from ``--password-file``, ``WALLET_PASSWORD`` or an interactive prompt
(never echoed), and never appear in output or logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from protocol.errors import IdentityError
from protocol.identity import (
    SCRYPT_N,
    Identity,
    create_keystore,
    import_private_key,
    load_keystore,
)
from protocol.ids import Address, parse_address
from wallet.settings import WalletSettings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_PASSWORD_FILE_BYTES = 4096


@dataclass(frozen=True)
class KeyEntry:
    name: str
    address: Address
    path: Path


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


def list_keys(directory: Path) -> list[KeyEntry]:
    """Every keystore in ``directory`` (address read from the file, no password needed)."""
    entries = []
    for path in sorted(directory.glob("*.json")):
        try:
            address = parse_address(
                "0x" + json.loads(path.read_text())["address"].removeprefix("0x")
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        entries.append(KeyEntry(path.stem, address, path))
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


def resolve_account(settings: WalletSettings) -> KeyEntry:
    """The account named by ``--account``/``WALLET_ACCOUNT``, or the only one there is."""
    entries = list_keys(settings.keystore_dir)
    if settings.account is not None:
        for entry in entries:
            if settings.account in (entry.name, entry.address, entry.address.lower()):
                return entry
        raise IdentityError(
            f"no account {settings.account!r} in {settings.keystore_dir}; "
            f"have: {', '.join(e.name for e in entries) or 'none'}"
        )
    if len(entries) == 1:
        return entries[0]
    if not entries:
        raise IdentityError(
            f"no keystore in {settings.keystore_dir}: create one with `gpumarket wallet new NAME`"
        )
    raise IdentityError(
        f"{len(entries)} accounts in {settings.keystore_dir}; choose one with --account "
        f"({', '.join(e.name for e in entries)})"
    )


def unlock(settings: WalletSettings, prompt: Callable[[str], str] | None) -> Identity:
    entry = resolve_account(settings)
    return load_keystore(entry.path, read_password(settings, prompt))
