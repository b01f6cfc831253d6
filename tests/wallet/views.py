"""Whole coordinator views as JSON, for stub coordinators and the wallet's unit tests.

Each builder returns what a coordinator would send, with the fields a test names replaced;
the result parses as the matching ``protocol.views`` model.
"""

from __future__ import annotations

from typing import Any

JOB_HEX = "0x" + "01" * 32
REQUESTER = "0x" + "44" * 20


def seat_json(seat: int = 0, **fields: Any) -> dict[str, Any]:
    """One ``ProviderView`` of a job view."""
    return {
        "address": "0x" + "a1" * 20,
        "peer_id": "12D3KooWStub",
        "price": "1000",
        "state": "assigned",
        "commit_hash": None,
        "result_cid": None,
        "outcome": None,
        "detail": None,
        "seat": seat,
        "rate_per_hour": "100",
        "assigned_at": None,
        "runtime_ms": None,
        "billed_ms": None,
        "pay": None,
        "slashed": None,
        **fields,
    }


def job_json(**fields: Any) -> dict[str, Any]:
    """A ``JobView`` as ``GET /jobs/{id}`` sends it."""
    return {
        "job_id": JOB_HEX,
        "state": "matching",
        "requester": REQUESTER,
        "spec_cid": "bafyspec",
        "redundancy": 1,
        "created_at": 1.0,
        "updated_at": 2.0,
        "result_cid": None,
        "failure": None,
        "providers": [],
        "settle_tx": None,
        "fee": "100000",
        "refund": None,
        "abort_tx": None,
        "price_cap": "2500000",
        "phases": {},
        **fields,
    }


def option_json(redundancy: str, seats: int, prices: list[int], **fields: Any) -> dict[str, Any]:
    """One ``QuoteOption`` seating providers at ``prices``."""
    chosen = [
        {
            "address": "0x" + f"{i + 1:02x}" * 20,
            "peer_id": f"12D3KooWStub{i}",
            "price": str(price),
            "rate_per_hour": str(price),
            "score": 1.0,
        }
        for i, price in enumerate(prices)
    ]
    return {
        "redundancy": redundancy,
        "seats": seats,
        "requested": False,
        "start": "now" if prices else "unmatched",
        "providers": chosen,
        "total": str(sum(prices)) if prices else None,
        "eligible": len(prices),
        "filtered": {},
        "candidates": [],
        **fields,
    }


def quote_json(options: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """A ``Quote`` as ``POST /quote`` sends it."""
    return {
        "name": "q",
        "gpus": 1,
        "duration_s": 60,
        "price_cap": "2500000",
        "exact": True,
        "providers_in_book": 3,
        "capable": 3,
        "incapable": {},
        "options": options,
        **fields,
    }
