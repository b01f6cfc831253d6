"""The signed link to a requester's own costs: it verifies for exactly that request, as
that requester, while fresh."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from protocol.api_auth import ADDRESS_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_request
from protocol.errors import SignatureError
from protocol.identity import Identity
from wallet.dashboard import VALID_S, costs_link, costs_path

ME = Identity.from_private_key("0x" + "61" * 32)


def _headers(link: str) -> tuple[str, dict[str, str], dict[str, list[str]]]:
    fragment = urlsplit(link).fragment
    path, _, query = fragment.partition("?")
    address = path.removeprefix("/costs/")
    params = parse_qs(query)
    headers = {
        ADDRESS_HEADER: address,
        TIMESTAMP_HEADER: params["ts"][0],
        SIGNATURE_HEADER: params["sig"][0],
    }
    return address, headers, params


def test_the_link_carries_a_signature_of_the_costs_request() -> None:
    link = costs_link("http://127.0.0.1:8000/", ME.private_key, hours=48, now=1_000_000)
    assert link.startswith(f"http://127.0.0.1:8000/dashboard#/costs/{ME.address}?")
    address, headers, params = _headers(link)
    assert address == ME.address and params["hours"] == ["48"]
    path = costs_path(address)
    assert verify_request(headers, "GET", path, now=1_000_010) == ME.address
    with pytest.raises(SignatureError):  # another resource
        verify_request(headers, "GET", costs_path("0x" + "11" * 20), now=1_000_010)
    with pytest.raises(SignatureError):  # stale
        verify_request(headers, "GET", path, now=1_000_000 + 2 * VALID_S + 120)
