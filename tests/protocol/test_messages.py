"""Wire messages: round trips, the type-tagged union, and refusal of malformed input."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from protocol import eip712
from protocol.clock import ManualClock
from protocol.encoding import canonical_json
from protocol.errors import MessageError, SignatureError
from protocol.ids import Address, Wei
from protocol.messages import (
    Accept,
    Ack,
    Advert,
    Assignment,
    Cancel,
    Challenge,
    ChallengeOpen,
    ChallengeResponse,
    ChallengeRows,
    Commitment,
    CommitReceipt,
    Decline,
    ErrorCode,
    ErrorReply,
    FailureKind,
    FailureReport,
    HandBack,
    JobOffer,
    LogChunk,
    OpenedRow,
    Reveal,
    RevealRequest,
    WireMessage,
    decode_as,
    decode_message,
    encode_message,
)
from protocol.messages.advert import MAX_INPUT_LIMIT
from protocol.messages.challenge import MAX_ROWS
from protocol.registry import MAX_MESSAGE_BYTES
from protocol.signing import Verifier, encode_signed, sign_message
from tests.protocol.factories import COORDINATOR, JOB_ID, NOW, PROVIDER, STRANGER, advert, cid_of

DOMAIN = eip712.Eip712Domain(31337, Address("0x5FbDB2315678afecb367f032d93F642f64180aa3"))
RESULT_CID = cid_of(b"outputs")
SALT = b"\x07" * 32
P, C = PROVIDER.address, COORDINATOR.address


RUNTIME_MS = 93_000
TERMS_HASH = b"\x0b" * 32


def _commitment() -> Commitment:
    digest = eip712.cid_to_result_digest(RESULT_CID)
    commit = eip712.commit_hash(JOB_ID, P, digest, RUNTIME_MS, SALT)
    sig = eip712.sign_commit(PROVIDER.private_key, DOMAIN, JOB_ID, P, commit)
    return Commitment(job_id=JOB_ID, provider=P, commit_hash=commit, signature=sig)


def _reveal() -> Reveal:
    digest = eip712.cid_to_result_digest(RESULT_CID)
    sig = eip712.sign_reveal(PROVIDER.private_key, DOMAIN, JOB_ID, P, digest, RUNTIME_MS, SALT)
    return Reveal(
        job_id=JOB_ID, provider=P, result_cid=RESULT_CID, runtime_ms=RUNTIME_MS, salt=SALT,
        signature=sig,
    )  # fmt: skip


def _offer() -> JobOffer:
    return JobOffer(
        job_id=JOB_ID, provider=P, coordinator=C, seat=1, price=Wei(2_000_000),
        rate_per_hour=Wei(3_600_000), expiry=NOW + 120, spec_cid=cid_of(b"spec"), gpus=1,
    )  # fmt: skip


def _accept() -> Accept:
    o = _offer()
    sig = eip712.sign_accept(
        PROVIDER.private_key, DOMAIN, JOB_ID, P, o.seat, o.price, o.rate_per_hour, TERMS_HASH,
        o.expiry,
    )  # fmt: skip
    return Accept(
        job_id=JOB_ID, provider=P, seat=o.seat, price=o.price, rate_per_hour=o.rate_per_hour,
        expiry=o.expiry, signature=sig,
    )  # fmt: skip


def _receipt() -> CommitReceipt:
    commit = _commitment().commit_hash
    sig = eip712.sign_receipt(COORDINATOR.private_key, DOMAIN, JOB_ID, P, 1, commit)
    return CommitReceipt(
        job_id=JOB_ID, provider=P, coordinator=C, seat=1, commit_hash=commit, signature=sig
    )


def every_message() -> list[WireMessage]:
    challenge_id = b"\x01" * 16
    return [
        advert(),
        Assignment(
            job_id=JOB_ID, provider=P, coordinator=C, seat=1, price=Wei(2_500_000),
            spec_cid=cid_of(b"spec"),
            input_cids={"code": cid_of(b"code")}, seed=42,
            commit_deadline=NOW + 600, reveal_deadline=NOW + 900,
        ),
        RevealRequest(job_id=JOB_ID, provider=P, coordinator=C, reveal_deadline=NOW + 900),
        Cancel(job_id=JOB_ID, provider=P, coordinator=C, reason="requester cancelled"),
        _commitment(),
        _reveal(),
        _offer(),
        _accept(),
        Decline(job_id=JOB_ID, provider=P, reason="coordinator not allowed", busy=False),
        _receipt(),
        LogChunk(job_id=JOB_ID, provider=P, stream="stdout", offset=0, data=b"hello\n"),
        HandBack(job_id=JOB_ID, provider=P, reason="GPU went away"),
        FailureReport(
            job_id=JOB_ID, provider=P, kind=FailureKind.NONZERO_EXIT, detail="exit 3", exit_code=3
        ),
        Challenge(
            challenge_id=challenge_id, coordinator=C, provider=P, seed=b"\x07" * 32,
            dtype="bf16", m=1024, k=4096, reps=8, deadline=NOW + 60,
        ),
        ChallengeResponse(
            challenge_id=challenge_id, provider=P, merkle_root=b"\x02" * 32, elapsed_s=0.25
        ),
        ChallengeOpen(challenge_id=challenge_id, coordinator=C, rows=(3, 17)),
        ChallengeRows(
            challenge_id=challenge_id, provider=P,
            rows=(
                OpenedRow(
                    index=3, values=b"\x00" * 64, digests=b"\x04" * 512,
                    proof=(b"\x03" * 32,),
                ),
            ),
        ),
        Ack(sender=P, of="job.assignment", job_id=JOB_ID),
        ErrorReply(sender=P, code=ErrorCode.BUSY, message="no free GPU", of="job.assignment"),
    ]  # fmt: skip


@pytest.mark.parametrize("message", every_message(), ids=lambda m: m.message_type)
def test_every_message_round_trips_canonically(message: WireMessage) -> None:
    data = encode_message(message)
    decoded = decode_message(data)
    assert decoded == message
    assert type(decoded) is type(message)
    assert encode_message(decoded) == data
    assert data == canonical_json(json.loads(data))


def test_message_types_are_distinct_and_versioned() -> None:
    messages = every_message()
    assert len({m.message_type for m in messages}) == len(messages)
    assert all(json.loads(encode_message(m))["v"] == 1 for m in messages)


def test_bytes_travel_as_hex_and_amounts_as_integers() -> None:
    obj = json.loads(encode_message(every_message()[1]))
    assert obj["job_id"] == "0x" + JOB_ID.hex()
    assert obj["price"] == 2_500_000


def test_decode_as_checks_the_class() -> None:
    data = encode_message(advert())
    assert isinstance(decode_as(Advert, data), Advert)
    with pytest.raises(MessageError, match="expected Assignment, got Advert"):
        decode_as(Assignment, data)


def _mutated(message: WireMessage, **changes: object) -> bytes:
    obj = json.loads(encode_message(message))
    obj.update(changes)
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"type": "nonsense"}, "does not match any of the expected tags"),
        ({"v": 2}, "v: Input should be 1"),
        ({"extra": 1}, "extra: Extra inputs are not permitted"),
        ({"provider": "0x1234"}, "provider: Value error, not an address"),
        ({"peer_id": "hello"}, "peer_id: Value error, not a peer id"),
        ({"free_gpus": 2}, "free_gpus 2 exceeds the 1 GPUs"),
        ({"free_gpus": "1"}, "free_gpus: Input should be a valid integer"),
        ({"utilization": 1.5}, "utilization: Input should be less than or equal to 1"),
        ({"price_per_gpu_hour": -1}, "price_per_gpu_hour: Input should be greater than"),
        ({"price_per_gpu_hour": 2**256}, "does not fit in uint256"),
        ({"runtimes": ["bash"]}, "runtimes.0: Input should be 'torch' or 'container'"),
        ({"multiaddrs": []}, "multiaddrs: Tuple should have at least 1 item"),
        ({"multiaddrs": ["/ip4/1.2.3.4"] * 17}, "multiaddrs: Tuple should have at most 16"),
    ],
)
def test_malformed_adverts_name_the_field(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(MessageError) as info:
        decode_message(_mutated(advert(), **changes))
    assert fragment in str(info.value)


def test_benchmark_refuses_unknown_dtypes_and_infinite_values() -> None:
    obj = json.loads(encode_message(advert()))
    obj["benchmark"]["tflops"] = {"fp64": 1.0}
    with pytest.raises(MessageError, match=r"benchmark\.tflops\.fp64"):
        decode_message(json.dumps(obj).encode())
    with pytest.raises(MessageError, match="Infinity is not allowed"):
        decode_message(encode_message(advert()).replace(b"51.2", b"Infinity"))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"[1,2]", "must be a JSON object"),
        (b'{"type":"advert",', "malformed JSON at line 1"),
        (b'{"type":"reply.ack","type":"reply.ack"}', "duplicate key 'type'"),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper than 32"),
        (b" " * (MAX_MESSAGE_BYTES + 1), "limit is"),
    ],
)
def test_undecodable_bytes_are_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(MessageError, match=fragment):
        decode_message(data)


def test_assignment_deadlines_must_be_ordered() -> None:
    message = every_message()[1]
    with pytest.raises(MessageError, match="reveal_deadline must come after commit_deadline"):
        decode_message(_mutated(message, reveal_deadline=NOW + 600))


def test_assignment_input_names_are_safe() -> None:
    with pytest.raises(MessageError, match="input_cids"):
        decode_message(_mutated(every_message()[1], input_cids={"../etc": str(RESULT_CID)}))


def test_challenge_rows_must_be_distinct_and_in_range() -> None:
    opened = ChallengeOpen(challenge_id=b"\x01" * 16, coordinator=C, rows=(1,))
    with pytest.raises(MessageError, match="rows must be distinct"):
        decode_message(_mutated(opened, rows=[4, 4]))
    with pytest.raises(MessageError, match=r"rows\.0"):
        decode_message(_mutated(opened, rows=[MAX_ROWS]))


def test_reveal_opens_its_commitment_and_verifies() -> None:
    commitment, reveal = _commitment(), _reveal()
    assert reveal.matches(commitment)
    assert reveal.commit_hash() == eip712.commit_hash(
        JOB_ID, P, eip712.cid_to_result_digest(RESULT_CID), RUNTIME_MS, SALT
    )
    commitment.verify(DOMAIN)
    reveal.verify(DOMAIN)
    for change in ({"salt": b"\x08" * 32}, {"runtime_ms": RUNTIME_MS + 1}):
        other = reveal.model_copy(update=change)
        assert not other.matches(commitment)
        with pytest.raises(SignatureError):
            other.verify(DOMAIN)


def test_accept_verifies_against_the_terms_hash() -> None:
    accept = _accept()
    accept.verify(DOMAIN, TERMS_HASH)
    with pytest.raises(SignatureError):
        accept.verify(DOMAIN, b"\x0c" * 32)  # other terms
    with pytest.raises(SignatureError):
        accept.model_copy(update={"seat": 2}).verify(DOMAIN, TERMS_HASH)
    with pytest.raises(SignatureError):
        accept.model_copy(update={"price": Wei(2_000_001)}).verify(DOMAIN, TERMS_HASH)
    forged = eip712.sign_accept(
        STRANGER.private_key, DOMAIN, JOB_ID, P, accept.seat, accept.price,
        accept.rate_per_hour, TERMS_HASH, accept.expiry,
    )  # fmt: skip
    with pytest.raises(SignatureError, match="not by"):
        accept.model_copy(update={"signature": forged}).verify(DOMAIN, TERMS_HASH)


def test_commit_receipt_is_the_coordinators() -> None:
    receipt = _receipt()
    receipt.verify(DOMAIN)
    with pytest.raises(SignatureError, match="not by"):
        receipt.model_copy(update={"coordinator": STRANGER.address}).verify(DOMAIN)
    with pytest.raises(SignatureError):
        receipt.model_copy(update={"seat": 0}).verify(DOMAIN)


@pytest.mark.parametrize(
    ("message", "changes", "fragment"),
    [
        (_offer(), {"seat": 8}, "seat: Input should be less than 8"),
        (_offer(), {"rate_per_hour": -1}, "rate_per_hour"),
        (_offer(), {"gpus": 65}, "gpus"),
        (_accept(), {"signature": "0x" + "00" * 64}, "signature"),
        (_receipt(), {"commit_hash": "0x" + "00" * 31}, "commit_hash"),
        (_reveal(), {"runtime_ms": 2**64}, "runtime_ms"),
        (_reveal(), {"runtime_ms": "5"}, "runtime_ms"),
    ],
)
def test_new_job_messages_refuse_bad_fields(
    message: WireMessage, changes: dict[str, object], fragment: str
) -> None:
    with pytest.raises(MessageError, match=fragment):
        decode_message(_mutated(message, **changes))


def test_reveal_result_cid_must_be_a_dag_pb_cidv1() -> None:
    raw_leaf = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    with pytest.raises(MessageError, match="result_cid"):
        decode_message(_mutated(_reveal(), result_cid=raw_leaf))


def test_cids_are_normalized_to_base32() -> None:
    from multiformats import CID

    base58 = CID.decode(RESULT_CID).encode("base58btc")
    message = decode_message(_mutated(_reveal(), result_cid=base58))
    assert isinstance(message, Reveal)
    assert message.result_cid == RESULT_CID


def test_messages_are_frozen() -> None:
    message = advert()
    with pytest.raises(Exception, match="frozen"):
        message.seq = 5


def test_author_is_the_party_that_must_sign() -> None:
    by_type = {m.message_type: m.author() for m in every_message()}
    assert by_type["advert"] == P
    assert by_type["job.assignment"] == C
    assert by_type["job.commitment"] == P
    assert by_type["job.offer"] == C
    assert by_type["job.accept"] == P
    assert by_type["job.decline"] == P
    assert by_type["job.commit_receipt"] == C
    assert by_type["challenge.open"] == C
    assert by_type["reply.error"] == P


def test_failure_kinds_are_the_documented_set() -> None:
    assert {k.value for k in FailureKind} == {
        "bad_input", "timeout", "oom", "nonzero_exit", "sandbox_error", "output_too_large",
        "output_refused", "pids_limit", "killed",
    }  # fmt: skip
    assert FailureKind.SANDBOX_ERROR.provider_fault and FailureKind.KILLED.provider_fault
    assert not FailureKind.OOM.provider_fault
    assert not FailureKind.PIDS_LIMIT.provider_fault
    assert not FailureKind.OUTPUT_REFUSED.provider_fault


def test_log_chunk_size_is_bounded() -> None:
    chunk = LogChunk(job_id=JOB_ID, provider=P, stream="stderr", offset=0, data=b"")
    big = "0x" + "00" * (64 * 1024 + 1)
    with pytest.raises(MessageError, match="data"):
        decode_message(_mutated(chunk, data=big))


def test_job_ids_must_be_32_bytes() -> None:
    with pytest.raises(MessageError, match="job_id"):
        decode_message(_mutated(_reveal(), job_id="0x" + hashlib.sha256(b"").hexdigest()[:62]))


def test_an_advert_states_its_input_limit_only_when_it_has_one() -> None:
    """``max_input_bytes`` round-trips signed, is left out while unset (an advert from a
    provider that does not send it encodes and verifies as signed), and is bounded."""
    verifier = Verifier(ManualClock(NOW))
    plain = encode_signed(sign_message(advert(expires_at=NOW + 30), PROVIDER))
    assert b"max_input_bytes" not in plain
    assert verifier.open_bytes(plain, Advert).max_input_bytes is None
    limited = advert(seq=2, expires_at=NOW + 30, max_input_bytes=3 << 30)
    signed = encode_signed(sign_message(limited, PROVIDER))
    assert b'"max_input_bytes":3221225472' in signed
    back = verifier.open_bytes(signed, Advert)
    assert back == limited and back.max_input_bytes == 3 << 30
    forged = signed.replace(b'"max_input_bytes":3221225472', b'"max_input_bytes":3221225473')
    with pytest.raises(SignatureError):
        Verifier(ManualClock(NOW)).open_bytes(forged)
    for bad in (0, MAX_INPUT_LIMIT + 1, "1"):
        with pytest.raises(ValidationError, match="max_input_bytes"):
            advert(max_input_bytes=bad)
