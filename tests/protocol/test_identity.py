"""Identities: one key for address and peer id; V3 keystores that cast also reads."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from pydantic import SecretStr

from devnet.tools import npm_tool
from protocol.errors import IdentityError, SignatureError
from protocol.identity import (
    Identity,
    address_from_peer_id,
    create_keystore,
    decrypt_keystore,
    encrypt_keystore,
    import_private_key,
    load_keystore,
    save_keystore,
    verify_peer_address,
)

# Anvil's first deterministic dev account (public knowledge, never holds real funds).
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
FAST_N = 2**10  # keeps tests quick; the default cost is 2**18
PASSWORD = "correct horse battery staple"


def test_private_key_gives_known_address_and_secp256k1_peer_id() -> None:
    identity = Identity.from_private_key(ANVIL_KEY)
    assert identity.address == ANVIL_ADDRESS
    assert identity.peer_id.startswith("16Uiu2")
    assert Identity.from_private_key(bytes.fromhex(ANVIL_KEY[2:])) == identity
    assert Identity.from_private_key(ANVIL_KEY[2:]) == identity


def test_libp2p_key_pair_matches_the_peer_id() -> None:
    identity = Identity.generate()
    pair = identity.libp2p_key_pair()
    assert ID.from_pubkey(pair.public_key).to_base58() == identity.peer_id


def test_private_key_is_not_in_repr() -> None:
    identity = Identity.from_private_key(ANVIL_KEY)
    assert ANVIL_KEY[2:] not in repr(identity)
    assert identity.address in repr(identity)


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("0xzz", "not valid hex"),
        ("0x" + "11" * 31, "must be 32 bytes"),
        (bytes(32), "outside the secp256k1 range"),
        ("0x" + "ff" * 32, "outside the secp256k1 range"),
    ],
)
def test_bad_private_keys_are_refused(key: str | bytes, fragment: str) -> None:
    with pytest.raises(IdentityError, match=fragment):
        Identity.from_private_key(key)


def test_address_is_recovered_from_peer_id_alone() -> None:
    identity = Identity.generate()
    assert address_from_peer_id(identity.peer_id) == identity.address
    verify_peer_address(identity.peer_id, identity.address)
    verify_peer_address(identity.peer_id, identity.address.lower())


def test_peer_id_of_another_key_is_refused() -> None:
    ours, theirs = Identity.generate(), Identity.generate()
    with pytest.raises(SignatureError, match="belongs to"):
        verify_peer_address(theirs.peer_id, ours.address)


def test_peer_ids_without_a_secp256k1_key_are_refused() -> None:
    ed25519 = ID.from_pubkey(create_new_key_pair().public_key).to_base58()
    with pytest.raises(SignatureError, match="secp256k1"):
        address_from_peer_id(ed25519)
    with pytest.raises(SignatureError, match="not a peer id"):
        address_from_peer_id("0OIl")


def test_keystore_round_trip_is_private_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "provider.json"
    identity = create_keystore(path, PASSWORD, scrypt_n=FAST_N)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["provider.json"]  # no temp file left
    keystore = json.loads(path.read_text())
    assert keystore["version"] == 3
    assert keystore["crypto"]["kdf"] == "scrypt"
    assert PASSWORD not in path.read_text()
    assert load_keystore(path, PASSWORD) == identity
    assert load_keystore(path, SecretStr(PASSWORD)) == identity


def test_keystore_never_overwrites_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    first = create_keystore(path, PASSWORD, scrypt_n=FAST_N)
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        create_keystore(path, PASSWORD, scrypt_n=FAST_N)
    assert load_keystore(path, PASSWORD) == first
    second = Identity.generate()
    save_keystore(path, second, PASSWORD, overwrite=True, scrypt_n=FAST_N)
    assert load_keystore(path, PASSWORD) == second


def test_wrong_password_is_an_identity_error_without_the_password(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    import_private_key(path, ANVIL_KEY, PASSWORD, scrypt_n=FAST_N)
    with pytest.raises(IdentityError) as info:
        load_keystore(path, "hunter2-wrong")
    assert "hunter2" not in str(info.value)
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"not json", "not JSON"),
        (b'{"version": 1}', "not a version 3 keystore"),
        (b'{"version": 3}', "no crypto section"),
        (b" " * (64 * 1024 + 1), "too large"),
    ],
)
def test_malformed_keystores_are_refused(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "k.json"
    path.write_bytes(content)
    with pytest.raises(IdentityError, match=fragment):
        load_keystore(path, PASSWORD)


def test_missing_keystore_and_broken_fields(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="cannot read keystore"):
        load_keystore(tmp_path / "absent.json", PASSWORD)
    keystore = encrypt_keystore(Identity.generate(), PASSWORD, scrypt_n=FAST_N)
    del keystore["crypto"]["ciphertext"]
    with pytest.raises(IdentityError, match="malformed keystore"):
        decrypt_keystore(keystore, PASSWORD)


def test_unreasonable_scrypt_cost_is_refused() -> None:
    keystore = encrypt_keystore(Identity.generate(), PASSWORD, scrypt_n=FAST_N)
    keystore["crypto"]["kdfparams"]["n"] = 2**30
    with pytest.raises(IdentityError, match="exceeds"):
        decrypt_keystore(keystore, PASSWORD)


@pytest.mark.integration
def test_cast_reads_our_keystore(tmp_path: Path) -> None:
    path = tmp_path / "ours.json"
    identity = import_private_key(path, ANVIL_KEY, "x", scrypt_n=FAST_N)
    out = subprocess.run(
        [str(npm_tool("cast")), "wallet", "address", "--keystore", str(path), "--password", "x"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == identity.address


@pytest.mark.integration
def test_we_read_casts_keystore(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(npm_tool("cast")), "wallet", "new", str(tmp_path), "--unsafe-password", "x"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    (file,) = tmp_path.iterdir()
    identity = load_keystore(file, "x")
    assert f"Address:    {identity.address}" in out.stdout
    with pytest.raises(IdentityError):
        load_keystore(file, "y")
