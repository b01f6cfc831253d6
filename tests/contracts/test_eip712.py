"""EIP-712 helpers: signatures recover to their signer and bind every field."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak

from contracts.eip712 import (
    Signature,
    commit_hash,
    recover_commit,
    recover_reveal,
    sign_commit,
    sign_reveal,
)
from protocol.errors import SignatureError
from protocol.ids import JobId

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
JOB = JobId(b"\x42" * 32)
RESULT = b"\x01" * 32
SALT = b"\x02" * 32


def test_reveal_round_trip_and_binding() -> None:
    acct = Account.create()
    sig = sign_reveal(acct, 31337, MARKET, JOB, RESULT, SALT)
    assert recover_reveal(31337, MARKET, JOB, acct.address, RESULT, SALT, sig) == acct.address
    # any changed field recovers someone else
    assert recover_reveal(1, MARKET, JOB, acct.address, RESULT, SALT, sig) != acct.address
    other_job = JobId(b"\x43" * 32)
    assert recover_reveal(31337, MARKET, other_job, acct.address, RESULT, SALT, sig) != acct.address
    assert recover_reveal(31337, MARKET, JOB, acct.address, SALT, SALT, sig) != acct.address
    assert Signature.from_bytes(sig.to_bytes()) == sig


def test_commit_hash_is_keccak_of_result_and_salt() -> None:
    assert commit_hash(RESULT, SALT) == keccak(RESULT + SALT)
    acct = Account.create()
    digest = commit_hash(RESULT, SALT)
    sig = sign_commit(acct, 31337, MARKET, JOB, digest)
    assert recover_commit(31337, MARKET, JOB, acct.address, digest, sig) == acct.address


def test_bad_inputs_raise_signature_error() -> None:
    with pytest.raises(SignatureError):
        commit_hash(b"short", SALT)
    with pytest.raises(SignatureError):
        Signature.from_bytes(b"\x00" * 64)
