"""Signed envelopes: forged, tampered, expired and replayed messages are refused."""

from __future__ import annotations

import json

import pytest

from protocol.clock import ManualClock
from protocol.errors import IdentityError, MessageError, SignatureError
from protocol.messages import Advert, Assignment, Cancel, HandBack
from protocol.registry import MAX_CLOCK_SKEW_S, MAX_MESSAGE_LIFETIME_S, signing_domain
from protocol.replay import NonceCache, ReplayError, SequenceTracker
from protocol.signing import (
    ExpiredError,
    SignedMessage,
    Verifier,
    check_signature,
    decode_signed,
    encode_signed,
    recover_signer,
    sign_message,
)
from tests.protocol.factories import COORDINATOR, JOB_ID, NOW, PROVIDER, STRANGER, advert


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def _hand_back(reason: str = "GPU went away") -> HandBack:
    return HandBack(job_id=JOB_ID, provider=PROVIDER.address, reason=reason)


def _cancel() -> Cancel:
    return Cancel(
        job_id=JOB_ID, provider=PROVIDER.address, coordinator=COORDINATOR.address, reason="x"
    )


def test_signed_message_round_trips_and_verifies(clock: ManualClock) -> None:
    signed = sign_message(_hand_back(), PROVIDER, clock=clock)
    data = encode_signed(signed)
    assert decode_signed(data) == signed
    assert recover_signer(signed) == PROVIDER.address
    body = Verifier(clock).open_bytes(data, HandBack)
    assert body == _hand_back()


def test_signature_is_domain_separated_by_message_type(clock: ManualClock) -> None:
    signed = sign_message(_hand_back(), PROVIDER, clock=clock)
    assert signed.signing_payload().startswith(signing_domain("job.hand_back", 1))
    assert signing_domain("advert", 1) == b"gpumarket:advert:1\n"


def test_unknown_private_key_is_an_identity_error() -> None:
    with pytest.raises(IdentityError):
        sign_message(_hand_back(), bytes(32))


def test_signer_must_be_the_author(clock: ManualClock) -> None:
    with pytest.raises(SignatureError, match="must be signed by"):
        sign_message(_hand_back(), STRANGER, clock=clock)


def test_forged_signer_claim_is_refused(clock: ManualClock) -> None:
    """A stranger signs but claims the provider's address."""
    genuine = sign_message(_hand_back(), PROVIDER, clock=clock, nonce=b"\x01" * 16)
    unsigned = HandBack(job_id=JOB_ID, provider=STRANGER.address, reason="GPU went away")
    stranger = sign_message(unsigned, STRANGER, clock=clock, nonce=b"\x01" * 16)
    forged = genuine.model_copy(update={"signature": stranger.signature})
    with pytest.raises(SignatureError, match="forged or tampered"):
        Verifier(clock).open(forged)


def test_message_signed_by_non_author_is_refused(clock: ManualClock) -> None:
    """Signature valid for its signer, but the body names someone else as author."""
    body = _hand_back()
    honest = sign_message(
        HandBack(job_id=JOB_ID, provider=STRANGER.address, reason=body.reason),
        STRANGER,
        clock=clock,
    )
    obj = json.loads(encode_signed(honest))
    obj["body"]["provider"] = PROVIDER.address
    with pytest.raises(SignatureError):
        Verifier(clock).open_bytes(json.dumps(obj).encode())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reason", "GPU is fine"),
        ("job_id", "0x" + "ab" * 32),
    ],
)
def test_tampered_body_is_refused(clock: ManualClock, field: str, value: str) -> None:
    obj = json.loads(encode_signed(sign_message(_hand_back(), PROVIDER, clock=clock)))
    obj["body"][field] = value
    with pytest.raises(SignatureError, match="forged or tampered"):
        Verifier(clock).open_bytes(json.dumps(obj).encode())


@pytest.mark.parametrize("field", ["nonce", "expires_at"])
def test_tampered_envelope_is_refused(clock: ManualClock, field: str) -> None:
    obj = json.loads(encode_signed(sign_message(_hand_back(), PROVIDER, clock=clock)))
    obj[field] = "0x" + "00" * 16 if field == "nonce" else obj[field] + 1
    with pytest.raises(SignatureError):
        Verifier(clock).open_bytes(json.dumps(obj).encode())


def test_corrupt_signature_is_refused(clock: ManualClock) -> None:
    signed = sign_message(_hand_back(), PROVIDER, clock=clock)
    bad = signed.model_copy(update={"signature": bytes(64) + b"\x1b"})
    with pytest.raises(SignatureError):
        check_signature(bad)


def test_expired_message_is_refused_after_skew(clock: ManualClock) -> None:
    signed = sign_message(_hand_back(), PROVIDER, clock=clock, ttl_s=10)
    clock.advance(10 + MAX_CLOCK_SKEW_S)
    Verifier(clock).open(signed)  # within the forgiven skew
    clock.advance(1)
    with pytest.raises(ExpiredError, match="expired"):
        Verifier(clock).open(signed)


def test_expiry_too_far_ahead_is_refused(clock: ManualClock) -> None:
    far = NOW + MAX_MESSAGE_LIFETIME_S + MAX_CLOCK_SKEW_S + 1
    signed = sign_message(_hand_back(), PROVIDER, clock=clock, expires_at=far)
    with pytest.raises(ExpiredError, match="ahead"):
        Verifier(clock).open(signed)


def test_replayed_nonce_is_refused_until_it_expires(clock: ManualClock) -> None:
    verifier = Verifier(clock)
    signed = sign_message(_hand_back(), PROVIDER, clock=clock, ttl_s=5)
    verifier.open(signed)
    with pytest.raises(ReplayError, match="already used"):
        verifier.open(signed)
    # A fresh nonce on the same body is a new message.
    verifier.open(sign_message(_hand_back(), PROVIDER, clock=clock, ttl_s=5))
    assert len(verifier.nonces) == 2
    clock.advance(5 + MAX_CLOCK_SKEW_S + 1)
    with pytest.raises(ExpiredError):
        verifier.open(signed)  # forgotten nonce, but expiry still refuses it
    verifier.open(sign_message(_hand_back(), PROVIDER, clock=clock))
    assert len(verifier.nonces) == 1


def test_failed_messages_leave_no_nonce_behind(clock: ManualClock) -> None:
    verifier = Verifier(clock)
    signed = sign_message(_hand_back(), PROVIDER, clock=clock)
    with pytest.raises(SignatureError):
        verifier.open(signed, signer=STRANGER.address)
    assert verifier.open(signed, signer=PROVIDER.address) == _hand_back()


def test_expected_type_and_signer_are_enforced(clock: ManualClock) -> None:
    signed = sign_message(_cancel(), COORDINATOR, clock=clock)
    with pytest.raises(MessageError, match="expected Assignment, got Cancel"):
        Verifier(clock).open(signed, Assignment)
    with pytest.raises(SignatureError, match="expected"):
        Verifier(clock).open(signed, Cancel, signer=STRANGER.address)


def test_advert_sequence_must_rise(clock: ManualClock) -> None:
    verifier = Verifier(clock)
    verifier.open(sign_message(advert(seq=5), PROVIDER, clock=clock), Advert)
    for stale in (5, 4):
        with pytest.raises(ReplayError, match="not above the last accepted 5"):
            verifier.open(sign_message(advert(seq=stale), PROVIDER, clock=clock), Advert)
    verifier.open(sign_message(advert(seq=6), PROVIDER, clock=clock), Advert)
    assert verifier.sequences.last(PROVIDER.address) == 6


def test_advert_expires_with_its_own_expiry(clock: ManualClock) -> None:
    signed = sign_message(advert(expires_at=NOW + 30), PROVIDER, clock=clock)
    assert signed.expires_at == NOW + 30
    clock.advance(30 + MAX_CLOCK_SKEW_S + 1)
    with pytest.raises(ExpiredError):
        Verifier(clock).open(signed)


def test_advert_peer_id_must_belong_to_provider(clock: ManualClock) -> None:
    lying = advert(peer_id=STRANGER.peer_id)
    signed = sign_message(lying, PROVIDER, clock=clock)
    with pytest.raises(SignatureError, match="belongs to"):
        Verifier(clock).open(signed)


def test_signature_over_one_type_does_not_verify_as_another(clock: ManualClock) -> None:
    signed = sign_message(_hand_back(), PROVIDER, clock=clock)
    obj = json.loads(encode_signed(signed))
    obj["body"]["type"] = "job.cancel"
    obj["body"]["coordinator"] = PROVIDER.address
    retyped = SignedMessage.model_validate(obj)
    with pytest.raises(SignatureError):
        check_signature(retyped)


def test_nonce_cache_is_bounded(clock: ManualClock) -> None:
    cache = NonceCache(clock, max_entries=2)
    cache.remember(PROVIDER.address, b"\x01" * 16, NOW + 10)
    cache.remember(PROVIDER.address, b"\x02" * 16, NOW + 10)
    with pytest.raises(MessageError, match="too many"):
        cache.remember(PROVIDER.address, b"\x03" * 16, NOW + 10)
    clock.advance(11)
    cache.remember(PROVIDER.address, b"\x03" * 16, NOW + 30)
    assert len(cache) == 1


def test_one_signer_filling_its_quota_does_not_crowd_out_another(clock: ManualClock) -> None:
    cache = NonceCache(clock, max_entries=100, max_per_signer=3)
    for i in range(3):
        cache.remember(STRANGER.address, bytes([i]) * 16, NOW + 3600)
    with pytest.raises(MessageError, match="in flight"):
        cache.remember(STRANGER.address, b"\x09" * 16, NOW + 3600)
    for i in range(3):  # the honest signer still has its whole quota
        cache.remember(PROVIDER.address, bytes([i]) * 16, NOW + 10)
    assert cache.held_by(STRANGER.address) == 3 and cache.held_by(PROVIDER.address) == 3
    clock.advance(11)  # the honest signer's short-lived nonces expire and free its quota
    cache.remember(PROVIDER.address, b"\x09" * 16, NOW + 30)
    assert cache.held_by(PROVIDER.address) == 1 and cache.held_by(STRANGER.address) == 3


def test_sequence_tracker_forgets_the_oldest_sender() -> None:
    tracker = SequenceTracker(max_senders=1)
    tracker.advance(PROVIDER.address, 3)
    tracker.advance(STRANGER.address, 1)
    assert tracker.last(PROVIDER.address) is None
    assert tracker.last(STRANGER.address) == 1


def test_oversized_envelope_is_refused() -> None:
    with pytest.raises(MessageError, match="limit is 10"):
        decode_signed(b"{" + b" " * 20 + b"}", max_bytes=10)
