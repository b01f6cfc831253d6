from __future__ import annotations

import pytest
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from proofs.commitment import (
    Commitment,
    Reveal,
    binding_hash,
    check_reveal,
    commit,
    new_salt,
    opens,
)
from proofs.errors import CommitmentMismatch
from protocol.ids import Address, JobId

b32 = st.binary(min_size=32, max_size=32)
JOB = JobId(bytes(range(32)))
ALICE = Address("0x" + "a1" * 20)
BOB = Address("0x" + "b2" * 20)


def test_commit_hash_is_keccak_of_packed_result_and_salt() -> None:
    result, salt = b"\x01" * 32, b"\x02" * 32
    c = commit(JOB, ALICE, result, salt)
    assert c.commit_hash == keccak(result + salt)


def test_salts_are_fresh_and_32_bytes() -> None:
    salts = {new_salt() for _ in range(50)}
    assert len(salts) == 50
    assert all(len(s) == 32 for s in salts)


@given(result=b32, salt=b32)
def test_reveal_opens_its_commitment(result: bytes, salt: bytes) -> None:
    c = commit(JOB, ALICE, result, salt)
    check_reveal(c, Reveal(JOB, ALICE, result, salt))


@given(result=b32, salt=b32, other=b32)
def test_changed_result_or_salt_does_not_open(result: bytes, salt: bytes, other: bytes) -> None:
    c = commit(JOB, ALICE, result, salt)
    if other != result:
        assert not opens(c, Reveal(JOB, ALICE, other, salt))
    if other != salt:
        assert not opens(c, Reveal(JOB, ALICE, result, other))


@given(result=b32, salt=b32)
def test_reveal_is_bound_to_job_and_provider(result: bytes, salt: bytes) -> None:
    c = commit(JOB, ALICE, result, salt)
    assert not opens(c, Reveal(JOB, BOB, result, salt))
    assert not opens(c, Reveal(JobId(b"\xff" * 32), ALICE, result, salt))
    with pytest.raises(CommitmentMismatch):
        check_reveal(c, Reveal(JOB, BOB, result, salt))


def test_malformed_values_are_refused() -> None:
    with pytest.raises(CommitmentMismatch):
        commit(JOB, ALICE, b"short", new_salt())
    c = commit(JOB, ALICE, b"\x00" * 32, b"\x00" * 32)
    assert not opens(c, Reveal(JOB, ALICE, b"\x00" * 31, b"\x00" * 32))
    assert not opens(
        Commitment(JOB, Address("nonsense"), c.commit_hash),
        Reveal(JOB, ALICE, b"\x00" * 32, b"\x00" * 32),
    )


@given(result=b32, salt=b32)
def test_binding_hash_names_job_and_provider(result: bytes, salt: bytes) -> None:
    h = binding_hash(JOB, ALICE, result, salt)
    assert h != binding_hash(JOB, BOB, result, salt)
    assert h != binding_hash(JobId(b"\x07" * 32), ALICE, result, salt)
    assert h == binding_hash(JOB, Address(ALICE.lower()), result, salt)
