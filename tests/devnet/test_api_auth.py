from __future__ import annotations

import pytest
from eth_account import Account

from protocol.api_auth import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_request, verify_request
from protocol.errors import SignatureError


def test_signed_request_verifies_and_binds_method_path_and_time() -> None:
    acct = Account.create()
    headers = sign_request(acct.key, "GET", "/jobs/0xab/logs", now=1000)
    assert verify_request(headers, "GET", "/jobs/0xab/logs", now=1010) == acct.address
    with pytest.raises(SignatureError, match="not made by"):
        verify_request(headers, "GET", "/jobs/0xcd/logs", now=1010)
    with pytest.raises(SignatureError, match="not fresh"):
        verify_request(headers, "GET", "/jobs/0xab/logs", now=5000)
    forged = dict(headers, **{TIMESTAMP_HEADER: "1001"})
    with pytest.raises(SignatureError, match="not made by"):
        verify_request(forged, "GET", "/jobs/0xab/logs", now=1010)
    del forged[SIGNATURE_HEADER]
    with pytest.raises(SignatureError, match=r"header is missing .x-gpumarket-signature"):
        verify_request(forged, "GET", "/jobs/0xab/logs", now=1010)
