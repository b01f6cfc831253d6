"""Pydantic field types for the wire and the job spec.

They wrap the typed ids of :mod:`protocol.ids` so that a model field both validates
untrusted input and carries the right ``NewType``. Bytes travel as ``0x``-prefixed
lowercase hex in JSON; integers stay integers; floats must be finite.
"""

from __future__ import annotations

from typing import Annotated, Any

from multiformats import CID
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    Strict,
    StrictInt,
    StrictStr,
)

from protocol.errors import MessageError
from protocol.ids import Address, Cid, JobId, PeerId, Wei, parse_address
from protocol.registry import MAX_ROW_BYTES, MAX_TEXT_CHARS

UINT256_MAX = 2**256 - 1
MAX_TIMESTAMP = 2**40
"""Far beyond any real Unix time in seconds, small enough to refuse nonsense."""


def hex_to_bytes(value: Any) -> Any:
    """Accept ``0x`` + hex text (any case) or raw bytes; leave anything else to pydantic."""
    if isinstance(value, str):
        if not value.startswith("0x"):
            raise ValueError("hex bytes must start with 0x")
        try:
            return bytes.fromhex(value[2:])
        except ValueError as exc:
            raise ValueError("not valid hex") from exc
    return value


def bytes_to_hex(value: bytes) -> str:
    return "0x" + value.hex()


_HEX_SERIALIZER = PlainSerializer(bytes_to_hex, return_type=str, when_used="json")

Bytes32 = Annotated[
    bytes, BeforeValidator(hex_to_bytes), Field(min_length=32, max_length=32), _HEX_SERIALIZER
]
Bytes16 = Annotated[
    bytes, BeforeValidator(hex_to_bytes), Field(min_length=16, max_length=16), _HEX_SERIALIZER
]
Signature65 = Annotated[
    bytes, BeforeValidator(hex_to_bytes), Field(min_length=65, max_length=65), _HEX_SERIALIZER
]
RowBytes = Annotated[
    bytes, BeforeValidator(hex_to_bytes), Field(max_length=MAX_ROW_BYTES), _HEX_SERIALIZER
]
"""One opened row of a challenge product (n values of the challenge dtype)."""


def _address(value: Any) -> Address:
    if not isinstance(value, str):
        raise ValueError("address must be a string")
    try:
        return parse_address(value)
    except MessageError as exc:
        raise ValueError(str(exc)) from exc


AddressField = Annotated[Address, BeforeValidator(_address)]


def _job_id(value: Any) -> Any:
    converted = hex_to_bytes(value)
    if not isinstance(converted, bytes) or len(converted) != 32:
        raise ValueError("job id must be 32 bytes (0x + 64 hex digits)")
    return JobId(converted)


JobIdField = Annotated[
    JobId,
    BeforeValidator(_job_id),
    PlainSerializer(bytes_to_hex, return_type=str, when_used="json"),
]


def normalize_cid(value: str) -> Cid:
    """Validate a CID and return its canonical text: CIDv1 in base32, CIDv0 unchanged."""
    if len(value) > 128:
        raise ValueError("CID is too long")
    try:
        cid = CID.decode(value)
    except Exception as exc:  # multiformats raises several unrelated types
        raise ValueError(f"not a CID: {value!r}") from exc
    if cid.version == 0:
        return Cid(str(cid))
    return Cid(cid.encode("base32"))


def _cid(value: Any) -> Cid:
    if not isinstance(value, str):
        raise ValueError("CID must be a string")
    return normalize_cid(value)


CidField = Annotated[Cid, BeforeValidator(_cid)]


def _verifiable_cid(value: Cid) -> Cid:
    # Imported here: protocol.ipfs pulls in the HTTP client, which most messages never need.
    from protocol.ipfs.cid import parse_cid
    from protocol.ipfs.errors import InvalidCid

    try:
        parse_cid(value)
    except InvalidCid as exc:
        raise ValueError(
            f"{value} cannot be verified: {exc.reason} "
            "(content CIDs must be CIDv0 or CIDv1 with a sha2-256 hash and codec raw or dag-pb)"
        ) from exc
    return value


ContentCidField = Annotated[Cid, BeforeValidator(_cid), AfterValidator(_verifiable_cid)]
"""A CID of content that providers fetch and check against it, so only CIDs whose content
the project can verify (:func:`protocol.ipfs.cid.parse_cid`) are accepted."""


def _peer_id(value: Any) -> PeerId:
    # Imported here: libp2p takes most of a second to import and only peer ids need it.
    from libp2p.peer.id import ID

    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise ValueError("peer id must be a base58 string")
    try:
        ID.from_base58(value)
    except Exception as exc:  # base58 and multihash errors vary by input
        raise ValueError(f"not a peer id: {value!r}") from exc
    return PeerId(value)


PeerIdField = Annotated[PeerId, BeforeValidator(_peer_id)]


def _wei(value: int) -> Wei:
    if value > UINT256_MAX:
        raise ValueError("amount does not fit in uint256")
    return Wei(value)


WeiField = Annotated[Wei, Strict(), Field(ge=0), AfterValidator(_wei)]

Timestamp = Annotated[StrictInt, Field(ge=0, lt=MAX_TIMESTAMP)]
"""Unix time in whole seconds."""

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]


ShortText = Annotated[StrictStr, Field(max_length=64)]
Text128 = Annotated[StrictStr, Field(max_length=128)]
Text256 = Annotated[StrictStr, Field(max_length=256)]
LongText = Annotated[StrictStr, Field(max_length=MAX_TEXT_CHARS)]

NameStr = Annotated[
    StrictStr,
    Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
]
"""A short identifier-like string: letters, digits, ``_ . -``, starting alphanumeric."""
