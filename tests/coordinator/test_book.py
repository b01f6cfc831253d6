"""The provider book: verified adverts in, silence out, chain facts and challenges applied."""

from __future__ import annotations

import pytest

from coordinator.matching.book import ProviderBook
from protocol.clock import ManualClock
from protocol.errors import MessageError, SignatureError
from protocol.ids import PeerId
from protocol.replay import ReplayError
from protocol.signing import Verifier, encode_signed, sign_message
from tests.protocol.factories import NOW, PROVIDER, STRANGER, advert


def make_book(clock: ManualClock) -> ProviderBook:
    return ProviderBook(clock.now, ttl_s=10, stake_refresh_s=5, verifier=Verifier(clock))


def test_only_signed_fresh_rising_adverts_from_their_own_peer_pass() -> None:
    clock = ManualClock(NOW)
    book = make_book(clock)
    data = encode_signed(sign_message(advert(seq=1), PROVIDER.private_key))
    assert book.validate(data, PeerId(PROVIDER.peer_id)).seq == 1
    with pytest.raises(ReplayError):
        book.validate(data, PeerId(PROVIDER.peer_id))
    relayed = encode_signed(sign_message(advert(seq=2), PROVIDER.private_key))
    with pytest.raises(SignatureError):
        book.validate(relayed, PeerId(STRANGER.peer_id))
    clock.advance(3600)
    stale = encode_signed(sign_message(advert(seq=3), PROVIDER.private_key))
    with pytest.raises(MessageError):
        book.validate(stale, PeerId(PROVIDER.peer_id))


def test_silence_removes_and_stake_gates_matching() -> None:
    clock = ManualClock(NOW)
    book = make_book(clock)
    book.accept(advert(expires_at=NOW + 60))
    assert len(book) == 1 and book.stake_due() == [PROVIDER.address]
    slot = book.columns.slot(PROVIDER.address)
    assert slot is not None and book.columns.free_stake[slot] < 0  # unknown until checked
    book.set_chain_facts(PROVIDER.address, registered=True, free_stake=500, group=3)
    assert book.columns.free_stake[slot] == 500 and book.columns.group[slot] == 3
    assert book.stake_due() == []
    book.record_check(PROVIDER.address, "bf16", passed=True, tflops=1.0, devices=1, reason="")
    book.accept(advert(seq=2, expires_at=NOW + 60))  # a new advert keeps the measurement
    assert book.columns.tflops[slot, 3] == 1.0
    assert book.view()[0]["tflops"]["bf16"] == 1.0
    clock.advance(11)
    assert book.expire() == [PROVIDER.address]
    assert len(book) == 0 and len(book.columns) == 0


def test_an_advert_input_limit_reaches_the_columns_and_an_older_advert_states_none() -> None:
    book = make_book(ManualClock(NOW))
    book.accept(advert(expires_at=NOW + 60, max_input_bytes=2 << 30))
    slot = book.columns.slot(PROVIDER.address)
    assert slot is not None and book.columns.max_input[slot] == 2 << 30
    book.accept(advert(seq=2, expires_at=NOW + 60))  # says nothing: no limit stated
    assert book.columns.max_input[slot] == float("inf")
