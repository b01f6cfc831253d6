"""Commit-reveal against a copier, through the coordinator's own doors: a provider that sees
an honest provider's Commitment cannot turn it into a reveal the coordinator accepts.

The copier (seat 2 of a redundancy-3 job, beside two honest providers that agree) signs
everything with its own real key and tries one scheme:

* ``hash``: it first sends the honest Commitment under its own name (the honest signature
  does not cover it: refused), then commits the honest commit hash with its own signature
  (accepted: nobody can tell yet) and reveals the honest result, runtime and salt under its
  own name: that reveal opens a hash naming the copier, not the one it committed;
* ``salt``: it commits to a guess with its own salt and reveals the honest result with that
  salt: the reveal does not open its commitment;
* ``replay``: it commits the honest commit hash and hands in the honest provider's own
  signed Reveal, which does open that hash but names (and is signed by) the honest one.

Each reveal is either answered to the coordinator's RevealRequest (``asked``: the
dispatcher and :meth:`coordinator.lifecycle.closing.Closer.accept_reveal`) or pushed as a report
(``reported``: :class:`coordinator.wire.reports.ReportHandler`, then ``accept_reveal``). Either
way the copier's seat never becomes REVEALED, the job settles with the honest result and
pays the honest two, and the copier's signed commitment, never opened, is slashed as
withheld: the coordinator waits for the reveal window to close before settling a job with
an unopened commitment, which ``contracts/README.md`` names as the condition for slashing
withholding ("slashed only when the decision waits for the reveal window to close").
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import pytest
import trio
from eth_keys.datatypes import PrivateKey
from eth_utils import keccak

from devnet.harness import STAKE, Harness, harness
from devnet.scripted_provider import FakeProvider
from protocol import eip712
from protocol.errors import GpuMarketError
from protocol.identity import Identity
from protocol.ids import Address, JobId, PeerId
from protocol.lifecycle import JobState, Outcome, SeatState
from protocol.messages import (
    Assignment,
    Commitment,
    CommitReceipt,
    Message,
    Reveal,
    RevealRequest,
)
from protocol.signing import SignedMessage, decode_signed, encode_signed, signing_payload

Scheme = Literal["hash", "salt", "replay"]
RATES = [10**6, 2 * 10**6, 3 * 10**6]
"""The matcher prefers the cheapest: the copier (the dearest) gets seat 2."""
STEP_S = 60
"""Chain time per driver step: the reveal window closes within a few dozen steps."""


def envelope(body: Message, who: Identity) -> bytes:
    """``body`` in an envelope signed by ``who``, whoever it names as its author (what
    :func:`protocol.signing.sign_message` refuses to build, a forger builds by hand)."""
    nonce, expires_at = os.urandom(16), int(time.time()) + 60
    signer = Address(who.address)
    digest = keccak(signing_payload(body, signer, nonce, expires_at))
    sig = PrivateKey(who.private_key).sign_msg_hash(digest)
    signed = SignedMessage(
        body=body,
        signer=signer,
        nonce=nonce,
        expires_at=expires_at,
        signature=sig.to_bytes()[:64] + bytes([27 + sig.v]),
    )
    return encode_signed(signed)


@dataclass
class Copier(FakeProvider):
    """A provider that copies ``victim`` instead of running the job (real signatures)."""

    victim: FakeProvider | None = None
    scheme: Scheme = "hash"
    push: bool = False
    refused: list[str] = field(default_factory=list)
    """Every report the coordinator refused, as ``Type: message``."""

    def _victim(self) -> FakeProvider:
        assert self.victim is not None
        return self.victim

    async def handle(self, data: bytes, peer: PeerId) -> bytes:
        body = decode_signed(data).body
        if isinstance(body, RevealRequest) and bytes(body.job_id) in self.salts:
            return self._sealed(self.reveal(body.job_id))
        return await super().handle(data, peer)

    def _sealed(self, body: Message) -> bytes:
        return envelope(body, self.identity)

    async def _commit(self, assignment: Assignment, coordinator: PeerId) -> None:
        job_id = JobId(bytes(assignment.job_id))
        key = bytes(job_id)
        victim = self._victim()
        while key not in victim.receipts:  # it waits to see the honest Commitment
            await trio.sleep(0.01)
        seen = victim.commitment(job_id)
        if self.scheme == "salt":
            self.result = b"a guess"
            body = self.commitment(job_id)
        else:
            # The honest Commitment under its own name: the honest signature does not cover it.
            await self._report(seen.model_copy(update={"provider": self.address}))
            self.salts[key] = victim.salts[key]
            signature = eip712.sign_commit(
                self.identity.private_key, self.domain, job_id, self.address, seen.commit_hash
            )
            body = Commitment(
                job_id=job_id,
                provider=Address(self.address),
                commit_hash=seen.commit_hash,
                signature=signature,
            )
        answer = await self._report(body)
        if isinstance(answer, CommitReceipt):
            self.receipts[key] = answer
        if self.push:
            await self._report(self.reveal(job_id))
        self.running.discard(key)

    def reveal(self, job_id: JobId) -> Reveal:
        victim = self._victim()
        if self.scheme == "replay":
            return victim.reveal(job_id)
        salt = victim.salts[bytes(job_id)] if self.scheme == "hash" else self.salts[bytes(job_id)]
        result, runtime = victim.digest_for(job_id), victim.runtime_for(job_id)
        signature = eip712.sign_reveal(
            self.identity.private_key, self.domain, job_id, self.address, result, runtime, salt
        )
        return Reveal(
            job_id=job_id,
            provider=Address(self.address),
            result_cid=eip712.digest_to_cid(result),
            runtime_ms=runtime,
            salt=salt,
            signature=signature,
        )

    async def _report(self, body: Message) -> Message | None:
        """Send a report straight to the coordinator's report handler."""
        assert self.report is not None
        try:
            raw = await self.report(self._sealed(body), PeerId(self.identity.peer_id))
        except GpuMarketError as exc:
            self.refused.append(f"{type(exc).__name__}: {exc}")
            return None
        return decode_signed(raw).body


def install_copier(h: Harness, index: int, victim: FakeProvider, **kw: Any) -> Copier:
    """Replace harness provider ``index`` by a copier with the same key, rate and chain."""
    fake = h.providers[index]
    copier = Copier(**{f.name: getattr(fake, f.name) for f in fields(FakeProvider)}, **kw)
    copier.victim = victim
    coordinator = PeerId(h.coordinator.peer_id)

    async def handle(protocol_id: str, payload: bytes) -> bytes:
        return await copier.handle(payload, coordinator)

    h.transport.handlers[fake.identity.peer_id] = handle
    h.providers[index] = copier
    return copier


@pytest.mark.parametrize("push", [False, True], ids=["asked", "reported"])
@pytest.mark.parametrize("scheme", ["hash", "salt", "replay"])
async def test_a_copied_reveal_is_refused_and_the_honest_result_settles(
    tmp_path: Path, scheme: Scheme, push: bool
) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        honest, second = h.providers[:2]
        copier = install_copier(h, 2, honest, scheme=scheme, push=push)
        job_id = await h.create_job(3)
        key = JobId(bytes.fromhex(job_id[2:]))
        job = await h.run(job_id, lambda j: j.state.terminal, advance=STEP_S)

        assert job.state is JobState.SETTLED, job.failure_reason
        assert job.result_cid == honest.result_cid()
        slots = {s.address: s for s in await h.slots(job_id)}
        assert [slots[Address(p.address)].idx for p in (honest, second, copier)] == [0, 1, 2]
        for p in (honest, second):
            assert slots[Address(p.address)].state is SeatState.REVEALED
            assert slots[Address(p.address)].outcome is Outcome.PAID

        seat = slots[Address(copier.address)]
        # Its commitment was accepted (signed by itself) and stays on record, unopened.
        committed = honest.commitment(key) if scheme != "salt" else copier.commitment(key)
        assert seat.commit_hash == "0x" + committed.commit_hash.hex()
        assert seat.state is SeatState.FAILED
        assert (seat.result_cid, seat.salt, seat.reveal_sig) == (None, None, None)
        if scheme == "replay":
            # The honest Reveal in the copier's envelope is refused where the coordinator
            # opens the answer (its author is not its signer); after ``reveal_attempts``
            # such answers the seat counts as not revealing.
            assert seat.detail is not None
            assert seat.detail.startswith("reveal failed (3x): SignatureError: job.reveal names")
        else:
            assert seat.detail == "reveal does not open its commitment"

        # Slashed as a withheld commitment, never paid: the coordinator waited for the
        # reveal window to close before settling (see the module docstring).
        assert seat.outcome is Outcome.SLASHED
        assert (seat.pay, seat.billed_ms) == (None, None)
        assert seat.slashed == h.world.stake_factor * seat.price
        info = h.chain(h.coordinator).provider_info(copier.address)
        assert (info.stake, info.earned, info.slashed) == (STAKE - seat.slashed, 0, 1)
        terms = h.chain(h.coordinator).job_terms(key)
        assert h.world.time > terms.reveal_close([s.seat() for s in slots.values()])

        # What the report handler refused, in order.
        expected: list[tuple[str, str]] = []
        if scheme != "salt":
            expected.append(("SignatureError: commit signed by ", f"not by {copier.address}"))
        if push and scheme == "replay":
            author = f"SignatureError: job.reveal names {honest.address} as author"
            expected.append((author, f"signed by {copier.address}"))
        elif push:
            expected.append(("MessageError: reveal does not open the commitment", ""))
        assert len(copier.refused) == len(expected), copier.refused
        for got, (start, end) in zip(copier.refused, expected, strict=True):
            assert got.startswith(start) and got.endswith(end), got


async def test_accept_reveal_itself_refuses_a_reveal_naming_another_provider(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path, 3, rates=RATES) as h:
        honest = h.providers[0]
        copier = install_copier(h, 2, honest, scheme="replay")
        job_id = await h.create_job(3)
        key = JobId(bytes.fromhex(job_id[2:]))
        for _ in range(20):
            seats = {s.address: s for s in await h.slots(job_id)}
            if (
                Address(copier.address) in seats
                and seats[Address(copier.address)].commit_hash is not None
            ):
                break
            await h.step(job_id)
        seat = seats[Address(copier.address)]
        assert seat.state is SeatState.COMMITTED
        assert seat.commit_hash == "0x" + honest.commitment(key).commit_hash.hex()

        accepted = await h.driver.accept_reveal(await h.job(job_id), seat, honest.reveal(key))
        seat = next(s for s in await h.slots(job_id) if s.address == copier.address)
        assert not accepted and seat.state is not SeatState.REVEALED
