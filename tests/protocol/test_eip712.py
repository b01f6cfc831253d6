"""EIP-712 Commit/Reveal: digests from first principles, signatures, result CIDs."""

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
from protocol.ids import Address
from tests.protocol.factories import JOB_ID, PROVIDER, STRANGER

DOMAIN = eip712.Eip712Domain(
    chain_id=31337, verifying_contract=Address("0x5FbDB2315678afecb367f032d93F642f64180aa3")
)
RESULT = hashlib.sha256(b"outputs").digest()
SALT = bytes(range(32))


def _word_address(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def _domain_separator(domain: eip712.Eip712Domain) -> bytes:
    typehash = keccak(
        b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    return keccak(
        typehash
        + keccak(b"gpumarket")
        + keccak(b"1")
        + domain.chain_id.to_bytes(32, "big")
        + _word_address(domain.verifying_contract)
    )


def _expected_commit_digest(job_id: bytes, provider: str, commit: bytes) -> bytes:
    typehash = keccak(b"Commit(bytes32 jobId,address provider,bytes32 commitHash)")
    struct = keccak(typehash + job_id + _word_address(provider) + commit)
    return keccak(b"\x19\x01" + _domain_separator(DOMAIN) + struct)


def _expected_reveal_digest(job_id: bytes, provider: str, result: bytes, salt: bytes) -> bytes:
    typehash = keccak(b"Reveal(bytes32 jobId,address provider,bytes32 result,bytes32 salt)")
    struct = keccak(typehash + job_id + _word_address(provider) + result + salt)
    return keccak(b"\x19\x01" + _domain_separator(DOMAIN) + struct)


def _recover(digest: bytes, signature: bytes) -> str:
    sig = keys.Signature(signature[:64] + bytes([signature[64] - 27]))
    return str(sig.recover_public_key_from_msg_hash(digest).to_checksum_address())


def test_commit_hash_is_keccak_of_packed_result_and_salt() -> None:
    assert eip712.commit_hash(RESULT, SALT) == keccak(RESULT + SALT)
    assert eip712.commit_hash(RESULT, SALT) != eip712.commit_hash(SALT, RESULT)


def test_commit_digest_matches_first_principles_and_signature_recovers() -> None:
    commit = eip712.commit_hash(RESULT, SALT)
    typed = eip712.commit_typed_data(DOMAIN, JOB_ID, PROVIDER.address, commit)
    expected = _expected_commit_digest(JOB_ID, PROVIDER.address, commit)
    assert eip712.typed_data_digest(typed) == expected
    signature = eip712.sign_commit(PROVIDER.private_key, DOMAIN, JOB_ID, PROVIDER.address, commit)
    # What a Solidity verifier does: ecrecover(digest, v, r, s).
    assert _recover(expected, signature) == PROVIDER.address
    eip712.verify_commit(DOMAIN, JOB_ID, PROVIDER.address, commit, signature)


def test_reveal_digest_matches_first_principles_and_signature_recovers() -> None:
    typed = eip712.reveal_typed_data(DOMAIN, JOB_ID, PROVIDER.address, RESULT, SALT)
    expected = _expected_reveal_digest(JOB_ID, PROVIDER.address, RESULT, SALT)
    assert eip712.typed_data_digest(typed) == expected
    signature = eip712.sign_reveal(
        PROVIDER.private_key, DOMAIN, JOB_ID, PROVIDER.address, RESULT, SALT
    )
    assert _recover(expected, signature) == PROVIDER.address
    eip712.verify_reveal(DOMAIN, JOB_ID, PROVIDER.address, RESULT, SALT, signature)


@pytest.mark.integration
def test_commit_signature_equals_foundry_cast(tmp_path) -> None:
    """cast is an independent EIP-712 implementation; RFC 6979 makes signatures equal."""
    commit = eip712.commit_hash(RESULT, SALT)
    typed = eip712.commit_typed_data(DOMAIN, JOB_ID, PROVIDER.address, commit)
    as_json = {**typed, "message": {**typed["message"]}}
    for name in ("jobId", "commitHash"):
        as_json["message"][name] = "0x" + typed["message"][name].hex()
    file = tmp_path / "commit.json"
    file.write_text(json.dumps(as_json))
    out = subprocess.run(
        [str(npm_tool("cast")), "wallet", "sign", "--data", "--from-file", str(file),
         "--private-key", "0x" + PROVIDER.private_key.hex()],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    ours = eip712.sign_commit(PROVIDER.private_key, DOMAIN, JOB_ID, PROVIDER.address, commit)
    assert out.stdout.strip() == "0x" + ours.hex()


def test_signature_by_another_key_is_refused() -> None:
    commit = eip712.commit_hash(RESULT, SALT)
    forged = eip712.sign_commit(STRANGER.private_key, DOMAIN, JOB_ID, PROVIDER.address, commit)
    with pytest.raises(SignatureError, match="not by provider"):
        eip712.verify_commit(DOMAIN, JOB_ID, PROVIDER.address, commit, forged)


@pytest.mark.parametrize(
    "change",
    ["job", "salt", "result", "chain", "contract"],
)
def test_reveal_signature_does_not_transfer(change: str) -> None:
    signature = eip712.sign_reveal(
        PROVIDER.private_key, DOMAIN, JOB_ID, PROVIDER.address, RESULT, SALT
    )
    job, result, salt, domain = JOB_ID, RESULT, SALT, DOMAIN
    if change == "job":
        job = type(JOB_ID)(bytes(32))
    elif change == "salt":
        salt = bytes(32)
    elif change == "result":
        result = bytes(32)
    elif change == "chain":
        domain = eip712.Eip712Domain(1, DOMAIN.verifying_contract)
    else:
        domain = eip712.Eip712Domain(DOMAIN.chain_id, STRANGER.address)
    with pytest.raises(SignatureError):
        eip712.verify_reveal(domain, job, PROVIDER.address, result, salt, signature)


def test_high_s_and_bad_v_signatures_are_refused() -> None:
    commit = eip712.commit_hash(RESULT, SALT)
    good = eip712.sign_commit(PROVIDER.private_key, DOMAIN, JOB_ID, PROVIDER.address, commit)
    s = int.from_bytes(good[32:64], "big")
    flipped = good[:32] + (eip712.SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - good[64]])
    with pytest.raises(SignatureError, match="malleable"):
        eip712.verify_commit(DOMAIN, JOB_ID, PROVIDER.address, commit, flipped)
    with pytest.raises(SignatureError, match="v must be"):
        eip712.verify_commit(DOMAIN, JOB_ID, PROVIDER.address, commit, good[:64] + b"\x01")
    with pytest.raises(SignatureError, match="65 bytes"):
        eip712.verify_commit(DOMAIN, JOB_ID, PROVIDER.address, commit, good[:64])


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
