"""EIP-712 (domain version "2"): commitment hash and digests of Accept, Commit,
CommitReceipt, Reveal and Permit computed from first principles, signatures that recover
(as ecrecover does) and bind every field, and result CIDs."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest
from eth_keys import keys
from eth_utils import keccak

from devnet.tools import npm_tool
from protocol import eip712
from protocol.errors import MessageError, SignatureError
from protocol.ids import Address, JobId
from tests.protocol.factories import COORDINATOR, JOB_ID, PROVIDER, STRANGER

DOMAIN = eip712.Eip712Domain(
    chain_id=31337, verifying_contract=Address("0x5FbDB2315678afecb367f032d93F642f64180aa3")
)
RESULT = hashlib.sha256(b"outputs").digest()
SALT = bytes(range(32))
RUNTIME_MS = 123_456
TERMS_HASH = keccak(b"terms")
TOKEN = Address("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512")


# ------------------------------------------------------------ first principles
def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _word_address(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def _separator(name: bytes, version: bytes, chain_id: int, contract: str) -> bytes:
    typehash = keccak(
        b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    return keccak(
        typehash + keccak(name) + keccak(version) + _word(chain_id) + _word_address(contract)
    )


def _digest(struct: bytes, separator: bytes | None = None) -> bytes:
    if separator is None:
        separator = _separator(b"gpumarket", b"2", DOMAIN.chain_id, DOMAIN.verifying_contract)
    return keccak(b"\x19\x01" + separator + keccak(struct))


def _commit_hash(
    job_id: bytes, provider: str, result: bytes, runtime_ms: int, salt: bytes
) -> bytes:
    """keccak256(abi.encode(jobId, provider, result, uint64 runtimeMs, salt))."""
    return keccak(job_id + _word_address(provider) + result + _word(runtime_ms) + salt)


def _accept_digest(seat: int, price: int, rate: int, expiry: int) -> bytes:
    typehash = keccak(
        b"Accept(bytes32 jobId,address provider,uint8 seat,uint64 price,uint64 ratePerHour,"
        b"bytes32 termsHash,uint32 expiry)"
    )
    return _digest(
        typehash + JOB_ID + _word_address(PROVIDER.address) + _word(seat) + _word(price)
        + _word(rate) + TERMS_HASH + _word(expiry)
    )  # fmt: skip


def _commit_digest(commit: bytes) -> bytes:
    typehash = keccak(b"Commit(bytes32 jobId,address provider,bytes32 commitHash)")
    return _digest(typehash + JOB_ID + _word_address(PROVIDER.address) + commit)


def _receipt_digest(seat: int, commit: bytes) -> bytes:
    typehash = keccak(
        b"CommitReceipt(bytes32 jobId,address provider,uint8 seat,bytes32 commitHash)"
    )
    return _digest(typehash + JOB_ID + _word_address(PROVIDER.address) + _word(seat) + commit)


def _reveal_digest() -> bytes:
    typehash = keccak(
        b"Reveal(bytes32 jobId,address provider,bytes32 result,uint64 runtimeMs,bytes32 salt)"
    )
    return _digest(
        typehash + JOB_ID + _word_address(PROVIDER.address) + RESULT + _word(RUNTIME_MS) + SALT
    )


def _recover(digest: bytes, signature: bytes) -> str:
    """What ecrecover(digest, v, r, s) returns."""
    sig = keys.Signature(signature[:64] + bytes([signature[64] - 27]))
    return str(sig.recover_public_key_from_msg_hash(digest).to_checksum_address())


# ----------------------------------------------------------------------- tests
def test_domain_is_version_2() -> None:
    assert DOMAIN.as_dict()["version"] == eip712.DOMAIN_VERSION == "2"


def test_commit_hash_binds_job_provider_result_runtime_and_salt() -> None:
    expected = _commit_hash(JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, SALT)
    assert eip712.commit_hash(JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, SALT) == expected
    others = {
        eip712.commit_hash(JobId(bytes(32)), PROVIDER.address, RESULT, RUNTIME_MS, SALT),
        eip712.commit_hash(JOB_ID, STRANGER.address, RESULT, RUNTIME_MS, SALT),
        eip712.commit_hash(JOB_ID, PROVIDER.address, SALT, RUNTIME_MS, SALT),
        eip712.commit_hash(JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS + 1, SALT),
        eip712.commit_hash(JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, RESULT),
    }
    assert expected not in others and len(others) == 5


def test_accept_digest_and_signature() -> None:
    args = (3, 2_000_000, 3_600_000, 1_700_000_600)
    typed = eip712.accept_typed_data(
        DOMAIN, JOB_ID, PROVIDER.address, 3, *args[1:3], TERMS_HASH, args[3]
    )
    assert eip712.typed_data_digest(typed) == _accept_digest(*args)
    sig = eip712.sign_accept(
        PROVIDER.private_key, DOMAIN, JOB_ID, PROVIDER.address, 3, 2_000_000, 3_600_000,
        TERMS_HASH, 1_700_000_600,
    )  # fmt: skip
    assert _recover(_accept_digest(*args), sig) == PROVIDER.address
    eip712.verify_accept(
        DOMAIN, JOB_ID, PROVIDER.address, 3, 2_000_000, 3_600_000, TERMS_HASH, 1_700_000_600, sig
    )
    for changed in (
        (4, 2_000_000, 3_600_000, TERMS_HASH, 1_700_000_600),
        (3, 2_000_001, 3_600_000, TERMS_HASH, 1_700_000_600),
        (3, 2_000_000, 3_600_001, TERMS_HASH, 1_700_000_600),
        (3, 2_000_000, 3_600_000, bytes(32), 1_700_000_600),
        (3, 2_000_000, 3_600_000, TERMS_HASH, 1_700_000_601),
    ):
        with pytest.raises(SignatureError):
            eip712.verify_accept(DOMAIN, JOB_ID, PROVIDER.address, *changed, sig)


def test_commit_digest_and_signature() -> None:
    commit = eip712.commit_hash(JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, SALT)
    typed = eip712.commit_typed_data(DOMAIN, JOB_ID, PROVIDER.address, commit)
    assert eip712.typed_data_digest(typed) == _commit_digest(commit)
    sig = eip712.sign_commit(PROVIDER.private_key, DOMAIN, JOB_ID, PROVIDER.address, commit)
    assert _recover(_commit_digest(commit), sig) == PROVIDER.address
    eip712.verify_commit(DOMAIN, JOB_ID, PROVIDER.address, commit, sig)


def test_commit_receipt_digest_is_signed_by_the_coordinator() -> None:
    commit = eip712.commit_hash(JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, SALT)
    typed = eip712.receipt_typed_data(DOMAIN, JOB_ID, PROVIDER.address, 2, commit)
    assert eip712.typed_data_digest(typed) == _receipt_digest(2, commit)
    sig = eip712.sign_receipt(COORDINATOR.private_key, DOMAIN, JOB_ID, PROVIDER.address, 2, commit)
    assert _recover(_receipt_digest(2, commit), sig) == COORDINATOR.address
    eip712.verify_receipt(DOMAIN, JOB_ID, PROVIDER.address, 2, commit, COORDINATOR.address, sig)
    with pytest.raises(SignatureError, match="not by"):
        eip712.verify_receipt(DOMAIN, JOB_ID, PROVIDER.address, 2, commit, STRANGER.address, sig)
    with pytest.raises(SignatureError):  # another seat
        eip712.verify_receipt(DOMAIN, JOB_ID, PROVIDER.address, 1, commit, COORDINATOR.address, sig)


def test_reveal_digest_and_signature() -> None:
    typed = eip712.reveal_typed_data(DOMAIN, JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, SALT)
    assert eip712.typed_data_digest(typed) == _reveal_digest()
    sig = eip712.sign_reveal(
        PROVIDER.private_key, DOMAIN, JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, SALT
    )
    assert _recover(_reveal_digest(), sig) == PROVIDER.address
    eip712.verify_reveal(DOMAIN, JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, SALT, sig)


def test_permit_digest_is_in_the_tokens_own_domain() -> None:
    owner, spender = PROVIDER.address, DOMAIN.verifying_contract
    sig = eip712.sign_permit(
        PROVIDER.private_key, chain_id=31337, token=TOKEN, token_name="Test USD", owner=owner,
        spender=spender, value=5, nonce=2, deadline=9,
    )  # fmt: skip
    typehash = keccak(
        b"Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
    )
    struct = typehash + _word_address(owner) + _word_address(spender) + _word(5) + _word(2)
    digest = _digest(struct + _word(9), _separator(b"Test USD", b"1", 31337, TOKEN))
    assert _recover(digest, sig.to_bytes()) == owner
    assert eip712.Signature.from_bytes(sig.to_bytes()) == sig


@pytest.mark.integration
def test_reveal_signature_equals_foundry_cast(tmp_path) -> None:
    """cast is an independent EIP-712 implementation; RFC 6979 makes signatures equal."""
    typed = eip712.reveal_typed_data(DOMAIN, JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, SALT)
    as_json = {**typed, "message": {**typed["message"]}}
    for name in ("jobId", "result", "salt"):
        as_json["message"][name] = "0x" + typed["message"][name].hex()
    file = tmp_path / "reveal.json"
    file.write_text(json.dumps(as_json))
    out = subprocess.run(
        [str(npm_tool("cast")), "wallet", "sign", "--data", "--from-file", str(file),
         "--private-key", "0x" + PROVIDER.private_key.hex()],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    ours = eip712.sign_reveal(
        PROVIDER.private_key, DOMAIN, JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, SALT
    )
    assert out.stdout.strip() == "0x" + ours.hex()


def test_signature_by_another_key_is_refused() -> None:
    commit = eip712.commit_hash(JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, SALT)
    forged = eip712.sign_commit(STRANGER.private_key, DOMAIN, JOB_ID, PROVIDER.address, commit)
    with pytest.raises(SignatureError, match="not by"):
        eip712.verify_commit(DOMAIN, JOB_ID, PROVIDER.address, commit, forged)


@pytest.mark.parametrize("change", ["job", "salt", "result", "runtime", "chain", "contract"])
def test_reveal_signature_does_not_transfer(change: str) -> None:
    signature = eip712.sign_reveal(
        PROVIDER.private_key, DOMAIN, JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, SALT
    )
    job, result, runtime, salt, domain = JOB_ID, RESULT, RUNTIME_MS, SALT, DOMAIN
    if change == "job":
        job = JobId(bytes(32))
    elif change == "salt":
        salt = bytes(32)
    elif change == "result":
        result = bytes(32)
    elif change == "runtime":
        runtime = RUNTIME_MS + 1
    elif change == "chain":
        domain = eip712.Eip712Domain(1, DOMAIN.verifying_contract)
    else:
        domain = eip712.Eip712Domain(DOMAIN.chain_id, STRANGER.address)
    with pytest.raises(SignatureError):
        eip712.verify_reveal(domain, job, PROVIDER.address, result, runtime, salt, signature)


def test_high_s_and_bad_v_signatures_are_refused() -> None:
    commit = eip712.commit_hash(JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, SALT)
    good = eip712.sign_commit(PROVIDER.private_key, DOMAIN, JOB_ID, PROVIDER.address, commit)
    s = int.from_bytes(good[32:64], "big")
    flipped = good[:32] + (eip712.SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - good[64]])
    with pytest.raises(SignatureError, match="malleable"):
        eip712.verify_commit(DOMAIN, JOB_ID, PROVIDER.address, commit, flipped)
    with pytest.raises(SignatureError, match="v must be"):
        eip712.verify_commit(DOMAIN, JOB_ID, PROVIDER.address, commit, good[:64] + b"\x01")
    with pytest.raises(SignatureError, match="65 bytes"):
        eip712.verify_commit(DOMAIN, JOB_ID, PROVIDER.address, commit, good[:64])


def test_signature_bytes_round_trip_and_bad_inputs() -> None:
    sig = eip712.sign_commit(PROVIDER.private_key, DOMAIN, JOB_ID, PROVIDER.address, RESULT)
    split = eip712.Signature.from_bytes(sig)
    assert split.v in (27, 28) and split.to_bytes() == sig
    assert eip712.Signature.from_bytes(sig[:64] + bytes([sig[64] - 27])) == split  # v as 0/1
    with pytest.raises(SignatureError):
        eip712.Signature.from_bytes(b"\x00" * 64)
    with pytest.raises(MessageError, match="salt must be 32 bytes"):
        eip712.commit_hash(JOB_ID, PROVIDER.address, RESULT, RUNTIME_MS, b"short")
    with pytest.raises(MessageError, match="runtime_ms"):
        eip712.commit_hash(JOB_ID, PROVIDER.address, RESULT, 2**64, SALT)
    with pytest.raises(MessageError, match="seat"):
        eip712.receipt_typed_data(DOMAIN, JOB_ID, PROVIDER.address, 256, RESULT)


def test_result_digest_round_trips_through_cid() -> None:
    cid = eip712.digest_to_cid(RESULT)
    assert cid.startswith("bafybei")
    assert eip712.cid_to_result_digest(cid) == RESULT


@pytest.mark.parametrize(
    ("cid", "reason"),
    [
        ("QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR", "CIDv1"),
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", "dag-pb"),
        ("not-a-cid", "not a CID"),
    ],
)
def test_result_digest_refuses_other_cids(cid: str, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        eip712.cid_to_result_digest(cid)


def test_digest_must_be_32_bytes() -> None:
    with pytest.raises(MessageError):
        eip712.digest_to_cid(b"\x00" * 31)
