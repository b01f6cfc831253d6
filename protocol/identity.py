"""A participant's one secp256k1 key: its address, its libp2p peer id, its keystore file.

The same 32-byte key signs Ethereum transactions, EIP-712 data and wire messages and
is the libp2p host key, so a peer id alone tells which address stands behind it
(:func:`address_from_peer_id`). Keys rest in Ethereum V3 keystores (scrypt, AES-128-CTR),
the format Foundry's ``cast wallet`` reads and writes. Passwords are never logged nor
put into error messages.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_account import Account
from eth_keys import keys
from pydantic import SecretStr

from protocol.errors import ConfigError, IdentityError, SignatureError
from protocol.files import write_atomic
from protocol.ids import Address, PeerId, parse_address

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair

SCRYPT_N = 2**18
"""Standard V3 scrypt cost (geth and eth-account's default)."""
MAX_KEYSTORE_BYTES = 64 * 1024
MAX_SCRYPT_N = 2**20
"""Refuse keystores that would make decryption take minutes or gigabytes."""

Password = str | SecretStr


@dataclass(frozen=True)
class Identity:
    """A private key with the address and peer id it implies. The key never prints."""

    private_key: bytes = field(repr=False)
    address: Address
    peer_id: PeerId

    @classmethod
    def from_private_key(cls, key: bytes | str) -> Identity:
        """Accept 32 raw bytes or hex text (with or without ``0x``)."""
        raw = _key_bytes(key)
        address = Address(keys.PrivateKey(raw).public_key.to_checksum_address())
        return cls(private_key=raw, address=address, peer_id=peer_id_from_private_key(raw))

    @classmethod
    def generate(cls) -> Identity:
        return cls.from_private_key(bytes(Account.create().key))

    def libp2p_key_pair(self) -> KeyPair:
        """The libp2p host key pair made from this identity's key."""
        from libp2p.crypto.keys import KeyPair
        from libp2p.crypto.secp256k1 import Secp256k1PrivateKey

        private = Secp256k1PrivateKey.from_bytes(self.private_key)
        return KeyPair(private, private.get_public_key())


def _key_bytes(key: bytes | str) -> bytes:
    if isinstance(key, str):
        text = key[2:] if key.startswith(("0x", "0X")) else key
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise IdentityError("private key is not valid hex") from None
    if len(key) != 32:
        raise IdentityError(f"private key must be 32 bytes, got {len(key)}")
    try:
        keys.PrivateKey(key)
    except Exception:  # eth_keys refuses zero and keys at or above the curve order
        raise IdentityError("private key is outside the secp256k1 range") from None
    return key


def peer_id_from_private_key(key: bytes) -> PeerId:
    """The libp2p peer id (``16Uiu2...``) of a secp256k1 key."""
    from libp2p.crypto.secp256k1 import Secp256k1PrivateKey
    from libp2p.peer.id import ID

    public = Secp256k1PrivateKey.from_bytes(key).get_public_key()
    return PeerId(ID.from_pubkey(public).to_base58())


def address_from_peer_id(peer_id: str) -> Address:
    """The Ethereum address of the secp256k1 key a peer id embeds.

    Raises ``SignatureError`` for peer ids that do not embed a secp256k1 key (e.g. the
    hashed ids of RSA keys), since then no address can be bound to the peer.
    """
    from libp2p.crypto.secp256k1 import Secp256k1PublicKey
    from libp2p.peer.id import ID

    try:
        public = ID.from_base58(peer_id).extract_public_key()
    except Exception as exc:  # base58/multihash/protobuf errors vary by input
        raise SignatureError(f"not a peer id: {peer_id!r}") from exc
    if not isinstance(public, Secp256k1PublicKey):
        raise SignatureError(f"peer id {peer_id} does not embed a secp256k1 key")
    try:
        eth_public = keys.PublicKey.from_compressed_bytes(public.to_bytes())
    except Exception as exc:  # invalid curve points
        raise SignatureError(f"peer id {peer_id} embeds an invalid key") from exc
    return Address(eth_public.to_checksum_address())


def verify_peer_address(peer_id: str, address: str) -> None:
    """Raise ``SignatureError`` unless ``peer_id`` and ``address`` are the same key."""
    derived = address_from_peer_id(peer_id)
    if derived != parse_address(address):
        raise SignatureError(f"peer id {peer_id} belongs to {derived}, not to {address}")


MAX_PASSWORD_FILE_BYTES = 4096


def read_password_file(path: Path, setting: str) -> SecretStr:
    """A keystore password from ``path``; ``setting`` names where the path came from.

    One trailing newline is what ``echo pw > file`` leaves; it is not part of the password.
    """
    try:
        raw = path.read_bytes()[: MAX_PASSWORD_FILE_BYTES + 1]
    except OSError as exc:
        raise ConfigError(f"cannot read {setting} {path}: {exc.strerror}") from exc
    if len(raw) > MAX_PASSWORD_FILE_BYTES:
        raise ConfigError(f"{setting} is larger than a password")
    return SecretStr(raw.decode("utf-8").removesuffix("\n").removesuffix("\r"))


def _password(password: Password) -> str:
    return password.get_secret_value() if isinstance(password, SecretStr) else password


def encrypt_keystore(
    identity: Identity, password: Password, *, scrypt_n: int = SCRYPT_N
) -> dict[str, Any]:
    """The V3 keystore JSON of ``identity`` (scrypt KDF, random salt and IV)."""
    keystore: dict[str, Any] = Account.encrypt(
        identity.private_key, _password(password), kdf="scrypt", iterations=scrypt_n
    )
    keystore["id"] = str(uuid.uuid4())
    return keystore


def decrypt_keystore(keystore: dict[str, Any], password: Password) -> Identity:
    """Decrypt V3 keystore JSON; ``IdentityError`` on a wrong password or bad file."""
    if not isinstance(keystore, dict) or keystore.get("version") != 3:
        raise IdentityError("not a version 3 keystore")
    crypto = keystore.get("crypto", keystore.get("Crypto"))
    if not isinstance(crypto, dict):
        raise IdentityError("keystore has no crypto section")
    params = crypto.get("kdfparams", {})
    if crypto.get("kdf") == "scrypt" and int(params.get("n", 0)) > MAX_SCRYPT_N:
        raise IdentityError(f"keystore scrypt cost n={params.get('n')} exceeds {MAX_SCRYPT_N}")
    try:
        raw = Account.decrypt(keystore, _password(password))
    except ValueError as exc:
        # eth-account says "MAC mismatch" for a wrong password; no secret is in the text.
        raise IdentityError(f"cannot decrypt keystore: {exc}") from None
    except Exception as exc:  # malformed fields raise KeyError/TypeError deep inside
        raise IdentityError(f"malformed keystore: {type(exc).__name__}") from None
    return Identity.from_private_key(bytes(raw))


def load_keystore(path: str | os.PathLike[str], password: Password) -> Identity:
    """Read and decrypt a keystore file (ours or one made by ``cast wallet``)."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_KEYSTORE_BYTES:
            raise IdentityError(f"{file} is {size} bytes, too large for a keystore")
        keystore = json.loads(file.read_bytes())
    except OSError as exc:
        raise IdentityError(f"cannot read keystore {file}: {exc.strerror}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise IdentityError(f"{file} is not JSON") from exc
    return decrypt_keystore(keystore, password)


def save_keystore(
    path: str | os.PathLike[str],
    identity: Identity,
    password: Password,
    *,
    overwrite: bool = False,
    scrypt_n: int = SCRYPT_N,
) -> Path:
    """Encrypt ``identity`` into ``path``, mode 0600, atomically (write, fsync, rename)."""
    file = Path(path)
    if file.exists() and not overwrite:
        raise IdentityError(f"{file} exists; refusing to overwrite a keystore")
    data = json.dumps(encrypt_keystore(identity, password, scrypt_n=scrypt_n)).encode()
    try:
        write_atomic(file, data)  # created 0600
    except OSError as exc:
        raise IdentityError(f"cannot write keystore {file}: {exc.strerror}") from exc
    return file


def create_keystore(
    path: str | os.PathLike[str], password: Password, *, scrypt_n: int = SCRYPT_N
) -> Identity:
    """Make a new random key and save it encrypted at ``path``."""
    identity = Identity.generate()
    save_keystore(path, identity, password, scrypt_n=scrypt_n)
    return identity


def import_private_key(
    path: str | os.PathLike[str],
    private_key: bytes | str,
    password: Password,
    *,
    scrypt_n: int = SCRYPT_N,
) -> Identity:
    """Save an existing key (e.g. an Anvil dev account) encrypted at ``path``."""
    identity = Identity.from_private_key(private_key)
    save_keystore(path, identity, password, scrypt_n=scrypt_n)
    return identity
