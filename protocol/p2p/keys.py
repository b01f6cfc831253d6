"""The libp2p side of a participant's one secp256k1 key.

Peer ids of this project embed the compressed secp256k1 public key (identity multihash,
``16Uiu2...``), so :func:`protocol.identity.address_from_peer_id` recovers the account
address from a peer id alone; this module only adds what the host itself needs.
"""

from __future__ import annotations

from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from protocol.errors import IdentityError, SignatureError
from protocol.identity import Identity


def key_pair_from_private_key(private_key: bytes) -> KeyPair:
    """The libp2p key pair of a 32-byte secp256k1 (Ethereum account) private key."""
    if len(private_key) != 32:
        raise IdentityError(f"a secp256k1 private key is 32 bytes, got {len(private_key)}")
    try:
        return Identity.from_private_key(private_key).libp2p_key_pair()
    except IdentityError:
        raise
    except Exception as exc:  # zero or above the curve order
        raise IdentityError("not a valid secp256k1 private key") from exc


def parse_peer_id(value: str) -> ID:
    """Decode a base58 peer id, raising ``SignatureError`` when it is not one."""
    try:
        return ID.from_base58(value)
    except Exception as exc:  # base58 and multihash errors vary by input
        raise SignatureError(f"not a peer id: {value!r}") from exc
