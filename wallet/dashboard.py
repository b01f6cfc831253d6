"""A link to the requester's own costs on the coordinator's dashboard.

The page reads ``GET /history/requesters/{address}``, which only that requester may read:
the link carries the timestamp and signature of that request (``protocol/api_auth.py``), so
it opens the page without the key and stops working when the signature is no longer fresh.
"""

from __future__ import annotations

from urllib.parse import urlencode

from eth_keys.datatypes import PrivateKey

from protocol.api_auth import (
    MAX_REQUEST_AGE_S,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign_request,
)

VALID_S = MAX_REQUEST_AGE_S


def costs_path(address: str) -> str:
    return f"/history/requesters/{address}"


def costs_link(
    coordinator_url: str, private_key: bytes, *, hours: int = 24 * 7, now: float | None = None
) -> str:
    """The dashboard page of the key's own costs over the last ``hours``."""
    address = PrivateKey(private_key).public_key.to_checksum_address()
    headers = sign_request(private_key, "GET", costs_path(address), now=now)
    query = urlencode(
        {"ts": headers[TIMESTAMP_HEADER], "sig": headers[SIGNATURE_HEADER], "hours": hours}
    )
    return f"{coordinator_url.rstrip('/')}/dashboard#/costs/{address}?{query}"
