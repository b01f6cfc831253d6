"""CIDs: building them from digests, parsing any text form, and the base32 text we emit.

Everything this project creates is CIDv1 with a sha2-256 multihash: ``raw`` for single
blocks of file data, ``dag-pb`` for UnixFS file and directory nodes. Daemons may print
other text forms of the same CID (js-ipfs prints base58btc); :func:`normalize_cid`
turns any of them into the canonical base32 text so CIDs compare as strings.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from multiformats import CID

from protocol.ids import Cid
from protocol.ipfs.dagpb import encode_varint
from protocol.ipfs.errors import InvalidCid

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
DIGEST_SIZE = 32

_MULTIHASH_PREFIX = bytes([SHA2_256, DIGEST_SIZE])


@dataclass(frozen=True)
class ParsedCid:
    """The parts of a CID this project verifies: version, codec and sha2-256 digest."""

    version: int
    codec: int
    digest: bytes

    @property
    def binary(self) -> bytes:
        return cid_binary(self.codec, self.digest, self.version)

    @property
    def text(self) -> Cid:
        return cid_text(self.binary)


def cid_binary(codec: int, digest: bytes, version: int = 1) -> bytes:
    """The binary CID for a sha2-256 ``digest``; version 0 only exists for dag-pb."""
    if len(digest) != DIGEST_SIZE:
        raise ValueError("sha2-256 digest must be 32 bytes")
    if version == 0:
        if codec != DAG_PB:
            raise ValueError("CIDv0 is always dag-pb")
        return _MULTIHASH_PREFIX + digest
    return encode_varint(1) + encode_varint(codec) + _MULTIHASH_PREFIX + digest


def block_cid(codec: int, block: bytes, version: int = 1) -> bytes:
    """Hash ``block`` and return its binary CID."""
    return cid_binary(codec, hashlib.sha256(block).digest(), version)


def cid_text(binary: bytes) -> Cid:
    """Text form: base32 (lower case, ``b`` prefix) for CIDv1, base58btc for CIDv0."""
    if len(binary) == 2 + DIGEST_SIZE and binary.startswith(_MULTIHASH_PREFIX):
        return Cid(str(CID("base58btc", 0, "dag-pb", binary)))
    encoded = base64.b32encode(binary).decode("ascii").rstrip("=").lower()
    return Cid("b" + encoded)


def parse_cid(text: str) -> ParsedCid:
    """Parse any text form; refuse CIDs whose content this project cannot verify."""
    if not isinstance(text, str) or not text or len(text) > 200:
        raise InvalidCid(str(text)[:80], "not a CID string")
    try:
        cid = CID.decode(text.strip())
    except (ValueError, KeyError) as exc:
        raise InvalidCid(text, str(exc) or type(exc).__name__) from exc
    if cid.hashfun.code != SHA2_256 or len(cid.raw_digest) != DIGEST_SIZE:
        raise InvalidCid(text, f"hash function {cid.hashfun.name} is not sha2-256")
    if cid.codec.code not in (RAW, DAG_PB):
        raise InvalidCid(text, f"codec {cid.codec.name} is neither raw nor dag-pb")
    return ParsedCid(version=cid.version, codec=cid.codec.code, digest=bytes(cid.raw_digest))


def parse_cid_binary(binary: bytes) -> ParsedCid:
    """Parse a binary CID as found in dag-pb links."""
    if len(binary) == 2 + DIGEST_SIZE and binary.startswith(_MULTIHASH_PREFIX):
        return ParsedCid(version=0, codec=DAG_PB, digest=binary[2:])
    if (
        len(binary) == 4 + DIGEST_SIZE
        and binary[0] == 1
        and binary[1] in (RAW, DAG_PB)
        and binary[2:4] == _MULTIHASH_PREFIX
    ):
        return ParsedCid(version=1, codec=binary[1], digest=binary[4:])
    raise InvalidCid(binary.hex(), "binary CID is not CIDv0/CIDv1 sha2-256 raw or dag-pb")


def normalize_cid(text: str) -> Cid:
    """Canonical text for a CIDv1 in any base (and for a CIDv0: its CIDv1 equivalent)."""
    parsed = parse_cid(text)
    return cid_text(cid_binary(parsed.codec, parsed.digest, 1))


def result_digest(text: str) -> bytes:
    """The 32-byte sha2-256 digest inside a CID: what the chain records as a result."""
    return parse_cid(text).digest
