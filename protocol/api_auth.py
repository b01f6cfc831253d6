"""Signed HTTP requests: a requester proves it holds its key to read its private data.

The client signs ``keccak256(domain || "METHOD PATH\\nTIMESTAMP")`` with its account key and
sends three headers; the server recovers the address, checks the timestamp is fresh and
that the address is the one allowed to read the resource. The domain prefix keeps these
signatures from ever verifying as a wire message, a transaction or EIP-712 data.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from eth_keys.datatypes import PrivateKey, Signature
from eth_keys.exceptions import BadSignature
from eth_keys.exceptions import ValidationError as EthKeysValidationError
from eth_utils import keccak

from protocol.errors import SignatureError
from protocol.ids import Address, parse_address
from protocol.registry import MAX_CLOCK_SKEW_S, signing_domain

ADDRESS_HEADER = "X-Gpumarket-Address"
TIMESTAMP_HEADER = "X-Gpumarket-Timestamp"
SIGNATURE_HEADER = "X-Gpumarket-Signature"
MAX_REQUEST_AGE_S = 300


def request_digest(method: str, path: str, timestamp: int) -> bytes:
    text = f"{method.upper()} {path}\n{timestamp}".encode()
    return keccak(signing_domain("api", 1) + text)


def sign_request(
    private_key: bytes, method: str, path: str, *, now: float | None = None
) -> dict[str, str]:
    """Headers that authenticate ``METHOD path`` as the holder of ``private_key``."""
    key = PrivateKey(private_key)
    timestamp = int(time.time() if now is None else now)
    signature = key.sign_msg_hash(request_digest(method, path, timestamp))
    return {
        ADDRESS_HEADER: key.public_key.to_checksum_address(),
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: "0x" + signature.to_bytes().hex(),
    }


def verify_request(
    headers: Mapping[str, str], method: str, path: str, *, now: float | None = None
) -> Address:
    """The address that signed this request; SignatureError when anything is off."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        claimed = lowered[ADDRESS_HEADER.lower()]
        stamp = lowered[TIMESTAMP_HEADER.lower()]
        sig_hex = lowered[SIGNATURE_HEADER.lower()]
    except KeyError as exc:
        raise SignatureError(f"request is not signed: a header is missing ({exc.args[0]})") from exc
    try:
        address = parse_address(claimed)
        timestamp = int(stamp)
        raw = bytes.fromhex(sig_hex.removeprefix("0x"))
    except ValueError as exc:
        raise SignatureError(f"malformed request signature headers: {exc}") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > MAX_REQUEST_AGE_S + MAX_CLOCK_SKEW_S:
        raise SignatureError(f"request signature timestamp {timestamp} is not fresh")
    try:
        recovered = Signature(raw).recover_public_key_from_msg_hash(
            request_digest(method, path, timestamp)
        )
    except (BadSignature, EthKeysValidationError, ValueError) as exc:
        raise SignatureError(f"request signature does not verify: {exc}") from exc
    if parse_address(recovered.to_checksum_address()) != address:
        raise SignatureError(f"request signature was not made by {address}")
    return address
