"""Signed envelopes for wire messages.

A :class:`SignedMessage` wraps a message with the signer's address, a random nonce and
an expiry. The signature is secp256k1 over ``keccak256(domain || canonical JSON)`` of
everything but the signature, where ``domain`` is ``gpumarket:<type>:<v>\\n`` (see
:func:`protocol.registry.signing_domain`): a signature over one message type never
verifies as another, nor as an Ethereum transaction or EIP-712 payload.

:class:`Verifier` runs every check a receiver needs, cheapest first: expiry (with
bounded clock skew), signature, signer == the message's author, peer id bound to the
author for adverts, nonce not seen before, and advert sequence numbers strictly rising.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypeVar

from eth_keys.datatypes import PrivateKey, Signature
from eth_keys.exceptions import BadSignature
from eth_keys.exceptions import ValidationError as EthKeysValidationError
from eth_utils import keccak
from pydantic import BaseModel, ConfigDict, ValidationError

from protocol.clock import SYSTEM_CLOCK, Clock
from protocol.eip712 import check_signature_form
from protocol.encoding import canonical_json, decode_json, encode_model
from protocol.errors import IdentityError, MessageError, SignatureError
from protocol.fields import AddressField, Bytes16, Signature65, Timestamp
from protocol.ids import Address
from protocol.messages import Advert, Message, WireMessage, validation_message
from protocol.registry import (
    MAX_CLOCK_SKEW_S,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_LIFETIME_S,
    signing_domain,
)
from protocol.replay import NonceCache, SequenceTracker

if TYPE_CHECKING:
    from protocol.identity import Identity

DEFAULT_TTL_S = 60

M = TypeVar("M", bound=WireMessage)


class ExpiredError(MessageError):
    """A message's expiry has passed, or lies further ahead than allowed."""


class SignedMessage(BaseModel):
    """A wire message with its signer, nonce, expiry and signature."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    body: Message
    signer: AddressField
    nonce: Bytes16
    expires_at: Timestamp
    signature: Signature65

    def signing_payload(self) -> bytes:
        return signing_payload(self.body, self.signer, self.nonce, self.expires_at)


def signing_payload(body: WireMessage, signer: Address, nonce: bytes, expires_at: int) -> bytes:
    """The exact bytes whose keccak256 is signed."""
    unsigned: dict[str, Any] = {
        "body": body.model_dump(mode="json"),
        "signer": signer,
        "nonce": "0x" + nonce.hex(),
        "expires_at": expires_at,
    }
    return signing_domain(body.message_type, body.v) + canonical_json(unsigned)


def _private_key(key: bytes | Identity) -> PrivateKey:
    raw = key if isinstance(key, bytes) else key.private_key
    try:
        return PrivateKey(raw)
    except (EthKeysValidationError, ValueError) as exc:
        raise IdentityError("not a valid secp256k1 private key") from exc


def sign_message(
    body: Message,
    key: bytes | Identity,
    *,
    expires_at: int | None = None,
    ttl_s: int = DEFAULT_TTL_S,
    clock: Clock = SYSTEM_CLOCK,
    nonce: bytes | None = None,
) -> SignedMessage:
    """Sign ``body`` with ``key``. Adverts expire when the advert itself does."""
    private = _private_key(key)
    signer = Address(private.public_key.to_checksum_address())
    author = body.author()
    if author is not None and author != signer:
        raise SignatureError(f"{body.message_type} must be signed by {author}, not {signer}")
    if expires_at is None:
        expires_at = body.expires_at if isinstance(body, Advert) else int(clock.now()) + ttl_s
    nonce = os.urandom(16) if nonce is None else nonce
    digest = keccak(signing_payload(body, signer, nonce, expires_at))
    sig = private.sign_msg_hash(digest)
    signature = sig.to_bytes()[:64] + bytes([27 + sig.v])
    return SignedMessage(
        body=body, signer=signer, nonce=nonce, expires_at=expires_at, signature=signature
    )


def recover_signer(signed: SignedMessage) -> Address:
    """The address that produced ``signed.signature`` over its payload."""
    check_signature_form(signed.signature)
    raw = signed.signature[:64] + bytes([signed.signature[64] - 27])
    digest = keccak(signed.signing_payload())
    try:
        public = Signature(raw).recover_public_key_from_msg_hash(digest)
    except (BadSignature, EthKeysValidationError, ValueError) as exc:
        raise SignatureError(f"signature does not recover: {exc}") from exc
    return Address(public.to_checksum_address())


def check_signature(signed: SignedMessage) -> None:
    """Raise ``SignatureError`` unless the claimed signer signed it and may author it."""
    recovered = recover_signer(signed)
    if recovered != signed.signer:
        raise SignatureError(
            f"{signed.body.message_type} claims signer {signed.signer} but was signed by "
            f"{recovered} (forged or tampered)"
        )
    author = signed.body.author()
    if author is not None and author != signed.signer:
        raise SignatureError(
            f"{signed.body.message_type} names {author} as author but is signed by {signed.signer}"
        )
    if isinstance(signed.body, Advert):
        # Imported here: identity pulls in libp2p, which only adverts need.
        from protocol.identity import verify_peer_address

        verify_peer_address(signed.body.peer_id, signed.body.provider)


def check_expiry(
    expires_at: int,
    now: float,
    *,
    max_skew_s: int = MAX_CLOCK_SKEW_S,
    max_lifetime_s: int = MAX_MESSAGE_LIFETIME_S,
) -> None:
    """Refuse an expired message, or one whose expiry lies beyond the allowed lifetime."""
    if now > expires_at + max_skew_s:
        raise ExpiredError(f"message expired {now - expires_at:.0f} s ago")
    if expires_at > now + max_lifetime_s + max_skew_s:
        raise ExpiredError(
            f"message expiry is {expires_at - now:.0f} s ahead, more than the "
            f"{max_lifetime_s} s allowed"
        )


def encode_signed(signed: SignedMessage) -> bytes:
    """Canonical bytes of a signed envelope, as sent on the wire."""
    return encode_model(signed)


def decode_signed(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> SignedMessage:
    """Parse an envelope from untrusted bytes. Does not check the signature."""
    obj = decode_json(data, max_bytes)
    try:
        return SignedMessage.model_validate(obj)
    except ValidationError as exc:
        raise MessageError(f"invalid signed message: {validation_message(exc)}") from exc


class Verifier:
    """Everything a receiver checks before acting on a signed message.

    One verifier per receiving endpoint: it remembers nonces until they expire and the
    last advert ``seq`` of each provider, so replays are refused.
    """

    def __init__(
        self,
        clock: Clock = SYSTEM_CLOCK,
        *,
        max_skew_s: int = MAX_CLOCK_SKEW_S,
        max_lifetime_s: int = MAX_MESSAGE_LIFETIME_S,
        nonces: NonceCache | None = None,
        sequences: SequenceTracker | None = None,
    ) -> None:
        self.clock = clock
        self.max_skew_s = max_skew_s
        self.max_lifetime_s = max_lifetime_s
        self.nonces = nonces if nonces is not None else NonceCache(clock, grace_s=max_skew_s)
        self.sequences = sequences if sequences is not None else SequenceTracker()

    def open(
        self,
        signed: SignedMessage,
        expect: type[M] = WireMessage,  # type: ignore[assignment]
        *,
        signer: Address | None = None,
    ) -> M:
        """Verify ``signed`` and return its body, which must be an ``expect``.

        ``signer`` pins who must have signed (e.g. the job's coordinator). Raises
        ``MessageError`` (``SignatureError``, ``ExpiredError``, ``ReplayError``).
        """
        body = signed.body
        if not isinstance(body, expect):
            raise MessageError(f"expected {expect.__name__}, got {type(body).__name__}")
        now = self.clock.now()
        limits = {"max_skew_s": self.max_skew_s, "max_lifetime_s": self.max_lifetime_s}
        check_expiry(signed.expires_at, now, **limits)
        if isinstance(body, Advert):
            check_expiry(body.expires_at, now, **limits)
        check_signature(signed)
        if signer is not None and signed.signer != signer:
            raise SignatureError(
                f"{body.message_type} signed by {signed.signer}, expected {signer}"
            )
        if isinstance(body, Advert):
            self.sequences.advance(body.provider, body.seq)
        else:
            self.nonces.remember(signed.signer, signed.nonce, signed.expires_at)
        return body

    def open_bytes(
        self,
        data: bytes,
        expect: type[M] = WireMessage,  # type: ignore[assignment]
        *,
        signer: Address | None = None,
        max_bytes: int = MAX_MESSAGE_BYTES,
    ) -> M:
        """Decode then :meth:`open` an envelope received as bytes."""
        return self.open(decode_signed(data, max_bytes), expect, signer=signer)
