"""Address lists as settings give them: comma-separated text or a list, checksummed."""

import pytest

from protocol.ids import parse_address_list

A = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
B = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def test_text_and_lists_become_checksummed_tuples() -> None:
    expected = ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8", B)
    assert parse_address_list(f" {A} ,{B},") == expected
    assert parse_address_list([A, B]) == expected
    assert parse_address_list("") == ()
    assert parse_address_list(None) is None  # left for the field's own validation


def test_a_bad_entry_is_named_with_what_to_give() -> None:
    with pytest.raises(ValueError, match=r"not an address: '0x12'.*comma-separated 0x"):
        parse_address_list(f"{A},0x12")


def test_token_amounts_read_without_trailing_zeros() -> None:
    from decimal import Decimal

    from protocol.ids import format_tokens

    assert format_tokens(7_600_000) == "7.6"
    assert format_tokens(80_000_000) == "80"
    assert format_tokens(1) == "0.000001"
    assert format_tokens(0) == "0"
    assert format_tokens(Decimal("1500000.6")) == "1.500001"  # a rate: whole base units
