"""dag-pb nodes, encoded and decoded by hand (no protobuf dependency).

The wire form is the protobuf message ``PBNode {repeated PBLink Links = 2; bytes Data = 1}``
with ``PBLink {bytes Hash = 1; string Name = 2; uint64 Tsize = 3}``. The canonical
encoding, which every IPFS implementation hashes, writes all links before the data, and
within a link the fields in the order Hash, Name, Tsize. A link's name is always written,
even when empty (file chunks have empty names).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.ipfs.errors import MalformedBlock

MAX_VARINT_BYTES = 10


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Return ``(value, next_pos)``; raise :class:`MalformedBlock` on truncation."""
    result = 0
    shift = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise MalformedBlock("truncated varint")
        byte = buf[pos + i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + i + 1
        shift += 7
    raise MalformedBlock("varint too long")


def field_bytes(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return encode_varint(number << 3 | 2) + encode_varint(len(value)) + value


def field_varint(number: int, value: int) -> bytes:
    """A varint protobuf field (wire type 0)."""
    return encode_varint(number << 3) + encode_varint(value)


def iter_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Split a protobuf message into ``(field_number, value)`` pairs in wire order.

    Only wire types 0 (varint) and 2 (length-delimited) occur in dag-pb and UnixFS;
    anything else is refused rather than skipped.
    """
    fields: list[tuple[int, int | bytes]] = []
    view = memoryview(buf)
    pos = 0
    while pos < len(buf):
        key, pos = decode_varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = decode_varint(view, pos)
            fields.append((number, value))
        elif wire == 2:
            length, pos = decode_varint(view, pos)
            if pos + length > len(buf):
                raise MalformedBlock("field runs past the end of the block")
            fields.append((number, bytes(view[pos : pos + length])))
            pos += length
        else:
            raise MalformedBlock(f"unexpected protobuf wire type {wire}")
    return fields


@dataclass(frozen=True)
class PBLink:
    """A link to a child block: its CID bytes, a name and the child's cumulative size."""

    cid: bytes
    name: str
    tsize: int

    def encode(self) -> bytes:
        return (
            field_bytes(1, self.cid)
            + field_bytes(2, self.name.encode("utf-8"))
            + field_varint(3, self.tsize)
        )


@dataclass(frozen=True)
class PBNode:
    links: tuple[PBLink, ...]
    data: bytes | None

    def encode(self) -> bytes:
        parts = [field_bytes(2, link.encode()) for link in self.links]
        if self.data is not None:
            parts.append(field_bytes(1, self.data))
        return b"".join(parts)


def decode_node(block: bytes) -> PBNode:
    """Parse a dag-pb block; refuse fields this project's layout never writes."""
    links: list[PBLink] = []
    data: bytes | None = None
    for number, value in iter_fields(block):
        if number == 2 and isinstance(value, bytes):
            if data is not None:
                raise MalformedBlock("link after data")
            links.append(_decode_link(value))
        elif number == 1 and isinstance(value, bytes):
            if data is not None:
                raise MalformedBlock("data field repeated")
            data = value
        else:
            raise MalformedBlock(f"unexpected dag-pb field {number}")
    return PBNode(links=tuple(links), data=data)


def _decode_link(buf: bytes) -> PBLink:
    cid: bytes | None = None
    name = ""
    tsize = 0
    for number, value in iter_fields(buf):
        if number == 1 and isinstance(value, bytes):
            cid = value
        elif number == 2 and isinstance(value, bytes):
            try:
                name = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedBlock("link name is not UTF-8") from exc
        elif number == 3 and isinstance(value, int):
            tsize = value
        else:
            raise MalformedBlock(f"unexpected link field {number}")
    if cid is None:
        raise MalformedBlock("link without a hash")
    return PBLink(cid=cid, name=name, tsize=tsize)
