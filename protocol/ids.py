"""Typed identifiers shared by every component.

They are ``NewType`` wrappers so that mypy keeps a job id from being passed where a
provider address is expected; the ``parse_*`` helpers validate untrusted input and
return the typed value (or raise :class:`protocol.errors.MessageError`).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import NewType

from eth_utils import is_hex_address, to_checksum_address

from protocol.errors import MessageError

JobId = NewType("JobId", bytes)
"""32 bytes: ``keccak256(abi.encode(requester, nonce))`` as fixed by the contract."""

Address = NewType("Address", str)
"""EIP-55 checksummed 20-byte account address."""

PeerId = NewType("PeerId", str)
"""libp2p peer id in base58 (secp256k1 keys give ids starting ``16Uiu2``)."""

Cid = NewType("Cid", str)
"""Content identifier as text (CIDv1 base32 for everything this project creates)."""

Wei = NewType("Wei", int)
"""An amount of the payment token in its smallest unit."""

TOKEN_DECIMALS = 6
"""Decimals of the payment token (a USD-like stablecoin)."""

_HEX32 = re.compile(r"^0x[0-9a-fA-F]{64}$")


def parse_address(value: str) -> Address:
    """Return ``value`` as a checksummed :data:`Address` or raise ``MessageError``."""
    if not isinstance(value, str) or not is_hex_address(value):
        raise MessageError(f"not an address: {value!r}")
    return Address(to_checksum_address(value))


def parse_address_list(value: object) -> object:
    """A settings value naming addresses: ``"0xA, 0xB"`` or a list becomes a tuple of
    checksummed addresses; anything else is handed back for the field's own validation.
    Raises ``ValueError`` (what a pydantic validator reports) naming the bad entry."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        try:
            return tuple(parse_address(str(part)) for part in value)
        except MessageError as exc:
            raise ValueError(f"{exc} (give comma-separated 0x addresses)") from exc
    return value


def parse_job_id(value: str | bytes) -> JobId:
    """Accept 32 raw bytes or ``0x`` + 64 hex digits."""
    if isinstance(value, bytes):
        if len(value) != 32:
            raise MessageError(f"job id must be 32 bytes, got {len(value)}")
        return JobId(value)
    if not isinstance(value, str) or not _HEX32.match(value):
        raise MessageError(f"job id must be 0x followed by 64 hex digits: {value!r}")
    return JobId(bytes.fromhex(value[2:]))


def job_id_hex(job_id: JobId) -> str:
    return "0x" + job_id.hex()


def to_wei(amount: str | int | Decimal, decimals: int = TOKEN_DECIMALS) -> Wei:
    """Convert a human token amount like ``"2.50"`` to integer units, refusing dust."""
    try:
        dec = Decimal(str(amount))
    except InvalidOperation as exc:
        raise MessageError(f"not a token amount: {amount!r}") from exc
    if dec < 0 or not dec.is_finite():
        raise MessageError(f"token amount must be a non-negative number: {amount!r}")
    scaled = dec.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise MessageError(f"token amount {amount!r} has more than {decimals} decimals")
    return Wei(int(scaled))


def from_wei(amount: int, decimals: int = TOKEN_DECIMALS) -> Decimal:
    return Decimal(amount).scaleb(-decimals)


def format_tokens(amount: int | Decimal) -> str:
    """Base units as token units for people, without trailing zeros: ``7.6``, not
    ``7.600000`` (a fractional base-unit amount, such as a rate, is rounded first)."""
    base = round(amount) if isinstance(amount, Decimal) else amount
    return f"{from_wei(base).normalize():f}"
