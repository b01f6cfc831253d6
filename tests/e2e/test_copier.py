"""Commit-reveal against a copier: a provider that sees another's Commitment cannot turn it
into a winning reveal of its own, checked with the real message types, the real EIP-712
domain of the devnet's market and the coordinator's own verdict logic."""

from __future__ import annotations

import hashlib
import secrets
import time

import pytest

from contracts.models import CompareMode, JobTerms
from coordinator.store import ProviderSlot
from coordinator.verifier import decide
from proofs.commitment import new_salt
from protocol import eip712
from protocol.errors import SignatureError
from protocol.identity import Identity
from protocol.ids import Address, JobId, Wei
from protocol.lifecycle import Outcome, SeatState
from protocol.messages.result import Commitment, Reveal
from tests.e2e.market import Market

pytestmark = pytest.mark.integration


RUNTIME_MS = 1234
NOW = 1_700_000_000


def commitment(
    who: Identity, domain: eip712.Eip712Domain, job: JobId, result: bytes, salt: bytes
) -> Commitment:
    digest = eip712.commit_hash(job, who.address, result, RUNTIME_MS, salt)
    return signed_commitment(who, domain, job, digest)


def signed_commitment(
    who: Identity, domain: eip712.Eip712Domain, job: JobId, digest: bytes
) -> Commitment:
    return Commitment(
        job_id=job,
        provider=who.address,
        commit_hash=digest,
        signature=eip712.sign_commit(who.private_key, domain, job, who.address, digest),
    )


def reveal(
    who: Identity, domain: eip712.Eip712Domain, job: JobId, result: bytes, salt: bytes
) -> Reveal:
    signature = eip712.sign_reveal(
        who.private_key, domain, job, who.address, result, RUNTIME_MS, salt
    )
    return Reveal(
        job_id=job,
        provider=who.address,
        result_cid=eip712.digest_to_cid(result),
        runtime_ms=RUNTIME_MS,
        salt=salt,
        signature=signature,
    )


def slot(idx: int, c: Commitment, r: Reveal | None, job: JobId) -> ProviderSlot:
    """A seat as the coordinator stores it after accepting (or refusing) a reveal."""
    opened = r is not None and r.matches(c)
    return ProviderSlot(
        job_id="0x" + job.hex(),
        idx=idx,
        address=c.provider,
        peer_id="",
        price=1000,
        rate_per_hour=3_600_000,
        assigned_at=NOW,
        state=SeatState.REVEALED if opened else SeatState.FAILED,
        updated_at=time.time(),
        commit_hash="0x" + c.commit_hash.hex(),
        commit_sig="0x" + c.signature.hex(),
        result_cid=r.result_cid if opened and r else None,
        runtime_ms=r.runtime_ms if opened and r else None,
        salt="0x" + r.salt.hex() if opened and r else None,
        reveal_sig="0x" + r.signature.hex() if opened and r else None,
    )


def terms(requester: str, coordinator: str) -> JobTerms:
    return JobTerms(
        requester=Address(requester),
        coordinator=Address(coordinator),
        redundancy=3,
        mode=CompareMode.EXACT,
        price_cap=Wei(1000),
        fee=Wei(10),
        timeout_ms=60_000,
        assign_deadline=NOW + 60,
        commit_window=120,
        reveal_window=120,
        spare_deadline=NOW + 60,
        settle_deadline=NOW + 600,
    )


def test_a_copied_commitment_cannot_be_revealed(market: Market) -> None:
    deployment = market.deployment()
    domain = eip712.Eip712Domain(deployment.chain_id, deployment.market)
    job = JobId(secrets.token_bytes(32))
    honest, second, copier = Identity.generate(), Identity.generate(), Identity.generate()
    result = hashlib.sha256(b"the honest outputs directory").digest()
    salt_h, salt_2 = new_salt(), new_salt()
    c_h = commitment(honest, domain, job, result, salt_h)
    c_2 = commitment(second, domain, job, result, salt_2)
    c_h.verify(domain)

    # 1. Replaying the honest Commitment under the copier's name: the EIP-712 signature
    #    names the honest provider, so it does not verify for the copier.
    stolen = c_h.model_copy(update={"provider": copier.address})
    with pytest.raises(SignatureError):
        stolen.verify(domain)

    # 2. Committing to the copied hash with its own signature binds the copier to it, but the
    #    hash names the honest provider: no reveal by the copier opens it, not even one with
    #    the honest result, runtime and salt (say they leaked).
    c_c = signed_commitment(copier, domain, job, c_h.commit_hash)
    c_c.verify(domain)
    leaked = reveal(copier, domain, job, result, salt_h)
    leaked.verify(domain)  # well signed, and still useless
    assert not leaked.matches(c_c)
    for _ in range(8):
        assert not reveal(copier, domain, job, result, new_salt()).matches(c_c)
    # Reusing the honest reveal itself fails too: it names (and is signed by) the honest one.
    honest_reveal = reveal(honest, domain, job, result, salt_h)
    assert honest_reveal.matches(c_h) and not honest_reveal.matches(c_c)

    # 3. Committing with its own salt means choosing a result before any reveal exists:
    #    a guess. Its reveal opens its commitment and loses the vote.
    guess = hashlib.sha256(b"a guess").digest()
    salt_c = new_salt()
    c_g = commitment(copier, domain, job, guess, salt_c)
    r_g = reveal(copier, domain, job, guess, salt_c)
    assert r_g.matches(c_g)

    r_h, r_2 = honest_reveal, reveal(second, domain, job, result, salt_2)
    # The coordinator's verdict, once the reveal window closed: the copier of the hash (an
    # unopened commitment) and the guesser are both slashed; the two honest providers are
    # paid; the job's result is the honest one.
    job_terms = terms(honest.address, second.address)
    after_window = NOW + job_terms.commit_window + job_terms.reveal_window + 1
    for copier_slot in (slot(2, c_c, leaked, job), slot(2, c_g, r_g, job)):
        seats = [slot(0, c_h, r_h, job), slot(1, c_2, r_2, job), copier_slot]
        verdict = decide(job, seats, job_terms, after_window)
        assert verdict.decided, verdict.reason
        assert verdict.result_cid == eip712.digest_to_cid(result)
        assert verdict.outcomes == {0: Outcome.PAID, 1: Outcome.PAID, 2: Outcome.SLASHED}
