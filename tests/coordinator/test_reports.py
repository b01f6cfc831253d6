"""Reports on REPORT_PROTOCOL: only signed, assigned, EIP-712-valid commitments count, and
each is answered with the coordinator's signed CommitReceipt, persisted first."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from coordinator.signals import Signals
from coordinator.store import AsyncStore, ProviderSlot, Store
from coordinator.wire.reports import NotAssigned, ReportHandler
from protocol import eip712
from protocol.errors import MessageError, SignatureError
from protocol.identity import Identity
from protocol.ids import Address, JobId, PeerId, Wei
from protocol.lifecycle import SeatState
from protocol.messages import Commitment, CommitReceipt, FailureKind, FailureReport, LogChunk
from protocol.signing import decode_signed, encode_signed, sign_message
from tests.coordinator.factories import job_record

COORD = Identity.from_private_key("0x" + "21" * 32)
PROV = Identity.from_private_key("0x" + "31" * 32)
OTHER = Identity.from_private_key("0x" + "41" * 32)
DOMAIN = eip712.Eip712Domain(31337, Address("0x" + "12" * 20))
JOB = JobId(bytes.fromhex(f"{7:064x}"))
ASSIGNED_AT = 1_700_000_000
NOW = [ASSIGNED_AT + 10.0]


async def no_reveal(*_: object) -> bool:
    return False


@pytest.fixture
async def handler(tmp_path: Path):
    store = AsyncStore(Store(f"sqlite:///{tmp_path / 'r.sqlite'}"))
    await store.add_job(job_record(7))
    await store.put_slots(
        [
            ProviderSlot(
                "0x" + JOB.hex(),
                1,
                PROV.address,
                PROV.peer_id,
                Wei(5),
                SeatState.RUNNING,
                0.0,
                assigned_at=ASSIGNED_AT,
            )
        ]
    )
    NOW[0] = ASSIGNED_AT + 10.0
    clock = lambda: NOW[0]  # noqa: E731
    yield ReportHandler(COORD, store, Signals(), DOMAIN, no_reveal, chain_now=clock), store
    store.sync.close()


def commitment(
    signer: Identity, provider: Identity = PROV, domain: eip712.Eip712Domain = DOMAIN
) -> Commitment:
    digest = hashlib.sha256(b"x").digest()
    sig = eip712.sign_commit(signer.private_key, domain, JOB, provider.address, digest)
    return Commitment(job_id=JOB, provider=provider.address, commit_hash=digest, signature=sig)


async def test_valid_commitment_is_stored_then_answered_with_a_signed_receipt(handler) -> None:
    h, store = handler
    reply = await h.handle(
        encode_signed(sign_message(commitment(PROV), PROV)), PeerId(PROV.peer_id)
    )
    signed = decode_signed(reply)
    receipt = signed.body
    assert isinstance(receipt, CommitReceipt) and signed.signer == COORD.address
    receipt.verify(DOMAIN)  # the coordinator's EIP-712 receipt, for seat 1
    assert (receipt.seat, receipt.commit_hash) == (1, hashlib.sha256(b"x").digest())
    slot = (await store.slots("0x" + JOB.hex()))[0]
    assert slot.state is SeatState.COMMITTED
    assert slot.commit_hash == "0x" + hashlib.sha256(b"x").digest().hex()
    assert slot.receipt_sig == "0x" + receipt.signature.hex()  # persisted with the commitment
    # The same commitment again gets the same receipt; a different one is refused.
    again = decode_signed(
        await h.handle(encode_signed(sign_message(commitment(PROV), PROV)), PeerId(PROV.peer_id))
    ).body
    assert isinstance(again, CommitReceipt) and again.signature == receipt.signature
    other = Commitment(
        job_id=JOB,
        provider=PROV.address,
        commit_hash=b"\1" * 32,
        signature=commitment(PROV).signature,
    )
    with pytest.raises(SignatureError):
        await h.handle(encode_signed(sign_message(other, PROV)), PeerId(PROV.peer_id))


async def test_a_commitment_after_the_seats_deadline_gets_no_receipt(handler) -> None:
    h, store = handler
    NOW[0] = ASSIGNED_AT + job_record(7).commit_window + 1
    with pytest.raises(MessageError, match="past its commit deadline"):
        await h.handle(encode_signed(sign_message(commitment(PROV), PROV)), PeerId(PROV.peer_id))
    assert (await store.slots("0x" + JOB.hex()))[0].receipt_sig is None


async def test_the_sender_is_checked_before_any_signature(handler, monkeypatch) -> None:
    h, _ = handler
    checked: list[object] = []
    monkeypatch.setattr(h.verifier, "open", lambda *a, **k: checked.append(a))
    forged = sign_message(commitment(OTHER, OTHER), OTHER).model_copy(
        update={"signature": b"\0" * 65}
    )
    with pytest.raises(NotAssigned):
        await h.handle(encode_signed(forged), PeerId(OTHER.peer_id))
    assert not checked  # refused on the store's word, without recovering a signature


async def test_forged_or_foreign_commitments_are_refused(handler) -> None:
    h, store = handler
    with pytest.raises(SignatureError):  # EIP-712 signature by someone else
        await h.handle(encode_signed(sign_message(commitment(OTHER), PROV)), PeerId(PROV.peer_id))
    wrong_domain = eip712.Eip712Domain(1, DOMAIN.verifying_contract)
    with pytest.raises(SignatureError):
        await h.handle(
            encode_signed(sign_message(commitment(PROV, domain=wrong_domain), PROV)),
            PeerId(PROV.peer_id),
        )
    with pytest.raises(NotAssigned):  # a provider this job never had
        await h.handle(
            encode_signed(sign_message(commitment(OTHER, OTHER), OTHER)), PeerId(OTHER.peer_id)
        )
    forged = sign_message(commitment(PROV), PROV).model_copy(update={"signer": OTHER.address})
    with pytest.raises(SignatureError):  # an envelope claiming another signer
        await h.handle(encode_signed(forged), PeerId(PROV.peer_id))
    with pytest.raises(MessageError):
        await h.handle(b"not json", PeerId(PROV.peer_id))
    assert (await store.slots("0x" + JOB.hex()))[0].commit_hash is None


async def test_logs_and_failures(handler) -> None:
    h, store = handler
    log = LogChunk(job_id=JOB, provider=PROV.address, stream="stdout", offset=0, data=b"one\ntwo\n")
    await h.handle(encode_signed(sign_message(log, PROV)), PeerId(PROV.peer_id))
    assert [line.text for line in await store.logs("0x" + JOB.hex())] == [
        "[stdout] one",
        "[stdout] two",
    ]
    failure = FailureReport(
        job_id=JOB, provider=PROV.address, kind=FailureKind.SANDBOX_ERROR, detail="boom"
    )
    await h.handle(encode_signed(sign_message(failure, PROV)), PeerId(PROV.peer_id))
    slot = (await store.slots("0x" + JOB.hex()))[0]
    assert slot.state is SeatState.FAILED and "boom" in (slot.detail or "")
