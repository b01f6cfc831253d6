"""Verdicts from commitments and reveals follow the contract's quorum rule."""

from __future__ import annotations

import hashlib

from contracts.eip712 import Signature
from contracts.models import EntryKind
from coordinator.states import Outcome, ProviderState
from coordinator.store import ProviderSlot
from coordinator.verifier import decide
from protocol import eip712
from protocol.identity import Identity
from protocol.ids import JobId

JOB = JobId(hashlib.sha256(b"job").digest())
DOMAIN = eip712.Eip712Domain(31337, "0x" + "12" * 20)  # type: ignore[arg-type]
KEYS = [Identity.from_private_key("0x" + f"{i + 1:064x}") for i in range(4)]


def slot(
    i: int, result: bytes | None, *, committed: bool = True, revealed: bool = True
) -> ProviderSlot:
    who = KEYS[i]
    salt = hashlib.sha256(b"salt%d" % i).digest()
    fields: dict = {}
    state = ProviderState.FAILED
    if result is not None and committed:
        cid = eip712.digest_to_cid(hashlib.sha256(result).digest())
        digest = eip712.cid_to_result_digest(cid)
        commit = eip712.commit_hash(digest, salt)
        fields["commit_hash"] = "0x" + commit.hex()
        fields["commit_sig"] = (
            "0x" + eip712.sign_commit(who.private_key, DOMAIN, JOB, who.address, commit).hex()
        )
        state = ProviderState.COMMITTED
        if revealed:
            sig = eip712.sign_reveal(who.private_key, DOMAIN, JOB, who.address, digest, salt)
            fields.update(result_cid=cid, salt="0x" + salt.hex(), reveal_sig="0x" + sig.hex())
            state = ProviderState.REVEALED
    return ProviderSlot(
        "0x" + JOB.hex(), i, who.address, who.peer_id, 100 + i, state, 0.0, **fields
    )


def test_agreement_pays_everyone_with_reveal_entries() -> None:
    verdict = decide(JOB, [slot(0, b"a"), slot(1, b"a")], 2, exact=True)
    assert verdict.decided and verdict.outcomes == {0: Outcome.PAID, 1: Outcome.PAID}
    assert verdict.settlement is not None
    assert [e.kind for e in verdict.settlement.entries] == [EntryKind.REVEAL, EntryKind.REVEAL]
    assert isinstance(verdict.settlement.entries[0].signature, Signature)
    assert [a.price for a in verdict.settlement.assignment] == [100, 101]


def test_two_one_split_slashes_the_odd_one_out() -> None:
    verdict = decide(JOB, [slot(0, b"a"), slot(1, b"b"), slot(2, b"a")], 3, exact=True)
    assert verdict.outcomes == {0: Outcome.PAID, 1: Outcome.SLASHED, 2: Outcome.PAID}


def test_unrevealed_commitment_counts_and_loses() -> None:
    verdict = decide(
        JOB, [slot(0, b"a"), slot(1, b"a"), slot(2, b"a", revealed=False)], 3, exact=True
    )
    assert verdict.settlement is not None
    assert verdict.settlement.entries[2].kind is EntryKind.COMMIT
    assert verdict.outcomes[2] is Outcome.SLASHED


def test_replaced_provider_is_released_not_slashed() -> None:
    verdict = decide(JOB, [slot(0, None), slot(1, b"a"), slot(2, b"a")], 2, exact=True)
    assert verdict.outcomes == {0: Outcome.RELEASED, 1: Outcome.PAID, 2: Outcome.PAID}
    assert verdict.settlement is not None and verdict.settlement.entries[0].kind is EntryKind.NONE


def test_tie_has_no_majority() -> None:
    verdict = decide(JOB, [slot(0, b"a"), slot(1, b"b")], 2, exact=True)
    assert not verdict.decided and "no majority" in verdict.reason
    # One reveal alone cannot beat a redundancy of two either.
    assert not decide(JOB, [slot(0, b"a"), slot(1, None)], 2, exact=True).decided


def test_tolerance_names_the_winning_group_and_slashes_nobody() -> None:
    verdict = decide(
        JOB, [slot(0, b"a"), slot(1, b"b"), slot(2, b"c")], 3, exact=False, groups=[[0, 2], [1]]
    )
    assert verdict.settlement is not None and verdict.settlement.winners == 0b101
    assert verdict.outcomes == {0: Outcome.PAID, 1: Outcome.RELEASED, 2: Outcome.PAID}
