"""An in-memory chain that follows the contracts' rules, for unit tests.

``FakeWorld`` (``contracts.fake_world``) holds the state and implements the contracts'
functions; ``world.client(key)`` returns a :class:`FakeChain` acting for one account and
implementing :class:`contracts.client.ChainClient` exactly as ``Web3Chain`` does: the same
methods, the same ``contracts.errors`` classes with the same fields, the same events.
Signatures (Accept, Commit, Reveal, CommitReceipt) are checked with real EIP-712 recovery.
Each write mines one block one second after the previous one; ``world.advance(seconds)``
and ``world.mine_next_at(timestamp)`` move time.
"""

from __future__ import annotations

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from contracts import errors as E
from contracts.client import MarketParams
from contracts.fake_world import FAKE_MARKET, FAKE_TOKEN, FakeWorld
from contracts.models import (
    AcceptedSeat,
    AccountInfo,
    ChainEvent,
    CoordinatorInfo,
    Deployment,
    JobInfo,
    JobRequest,
    JobStatus,
    JobTerms,
    OnChainEntry,
    ProviderInfo,
    Receipt,
    Seat,
    Settlement,
)
from protocol.eip712 import Signature, sign_permit
from protocol.ids import Address, JobId, Wei, parse_address

TOKEN_NAME = "Test USD"

__all__ = ["FAKE_MARKET", "FAKE_TOKEN", "FakeChain", "FakeWorld"]


class FakeChain:
    """:class:`contracts.client.ChainClient` over a :class:`FakeWorld`."""

    def __init__(self, world: FakeWorld, account: LocalAccount | str) -> None:
        self.world = world
        self._signer: LocalAccount | None
        if isinstance(account, LocalAccount):
            self._signer = account
        elif isinstance(account, str) and len(account.removeprefix("0x")) == 64:
            self._signer = Account.from_key(account)
        else:
            self._signer = None
        self._address = parse_address(self._signer.address if self._signer else str(account))

    def for_account(self, account: LocalAccount | str) -> FakeChain:
        return FakeChain(self.world, account)

    @property
    def address(self) -> Address:
        return self._address

    @property
    def deployment(self) -> Deployment:
        return self.world.deployment

    # chain -------------------------------------------------------------------
    def block_number(self) -> int:
        return self.world.block

    def now(self) -> int:
        return self.world.time

    def get_events(self, from_block: int, to_block: int) -> list[ChainEvent]:
        return [e for e in self.world.events if from_block <= e.block_number <= to_block]

    def block_timestamp(self, number: int) -> int:
        if number not in self.world.block_times:
            raise E.RpcError(f"block {number} not found")
        return self.world.block_times[number]

    def block_hash(self, number: int) -> bytes | None:
        """The in-memory chain never reorganises: a hash fixed by the block's number."""
        if number not in self.world.block_times:
            return None
        return keccak(b"fake block" + number.to_bytes(32, "big"))

    def forget_job(self, job_id: JobId) -> None:
        """Nothing is cached here."""

    def gas_shortfall(self, gas: int) -> E.InsufficientGasMoney | None:
        """The in-memory chain charges no gas."""
        return None

    def market_params(self) -> MarketParams:
        w = self.world
        return MarketParams(
            min_stake=Wei(w.min_stake),
            stake_factor=w.stake_factor,
            min_price=Wei(w.min_price),
            unbonding_delay=w.unbonding_delay,
            min_coordinator_bond=Wei(w.min_coordinator_bond),
            coordinator_unbond_delay=w.coordinator_unbond_delay,
        )

    # token -------------------------------------------------------------------
    def token_balance(self, owner: str) -> Wei:
        return Wei(self.world.balance(owner))

    def mint(self, to: str, amount: int) -> Receipt:
        return self._receipt(self.world.mint(self._address, to, amount))

    def approve(self, spender: str, amount: int) -> Receipt:
        return self._receipt(self.world.approve(self._address, spender, amount))

    def sign_permit(self, spender: str, value: int, deadline: int) -> Signature:
        if self._signer is None:
            raise E.ChainError("this fake client has no key to sign with")
        return sign_permit(
            self._signer,
            chain_id=self.world.deployment.chain_id,
            token=FAKE_TOKEN,
            token_name=TOKEN_NAME,
            owner=self._address,
            spender=spender,
            value=value,
            nonce=self.world.permit_nonces.get(self._address, 0),
            deadline=deadline,
        )

    # registry: providers -------------------------------------------------------
    def register(self, group: int = 0) -> Receipt:
        return self._receipt(self.world.register(self._address, group))

    def stake(self, amount: int) -> Receipt:
        return self._receipt(self.world.stake_with_permit(self._address, amount))

    def request_unbond(self, amount: int) -> Receipt:
        return self._receipt(self.world.request_unbond(self._address, amount))

    def withdraw(self) -> Receipt:
        return self._receipt(self.world.withdraw(self._address))

    def provider_info(self, provider: str) -> ProviderInfo:
        who = parse_address(provider)
        p, u = self.world.provider(who), self.world.unbonding(who)
        return ProviderInfo(
            address=who,
            registered=p.registered,
            group=p.group,
            stake=Wei(p.stake),
            locked=Wei(p.locked),
            free=Wei(p.stake - p.locked),
            earned=Wei(p.earned),
            completed=p.completed,
            slashed=p.slashed,
            unbonding=Wei(u.amount),
            unbond_ready_at=u.ready_at,
        )

    # registry: coordinators ----------------------------------------------------
    def bond_coordinator(self, amount: int) -> Receipt:
        return self._receipt(self.world.bond_coordinator(self._address, amount))

    def request_coordinator_unbond(self, amount: int) -> Receipt:
        return self._receipt(self.world.request_coordinator_unbond(self._address, amount))

    def withdraw_coordinator_bond(self) -> Receipt:
        return self._receipt(self.world.withdraw_coordinator_bond(self._address))

    def coordinator_info(self, coordinator: str) -> CoordinatorInfo:
        who = parse_address(coordinator)
        c = self.world.coordinator(who)
        return CoordinatorInfo(who, Wei(c.bond), Wei(c.unbonding), c.ready_at)

    # market: requester -----------------------------------------------------------
    def create_job(self, request: JobRequest) -> tuple[JobId, Receipt]:
        job_id, tx = self.world.create_job(self._address, request)
        return job_id, self._receipt(tx)

    def cancel(self, job_id: JobId) -> Receipt:
        return self._receipt(self.world.cancel(self._address, job_id))

    def reclaim(self, job_id: JobId) -> Receipt:
        seats = self.get_seats(job_id)
        return self._receipt(self.world.reclaim(self._address, job_id, seats))

    def claim(self) -> Receipt:
        return self._receipt(self.world.claim(self._address))

    # market: coordinator ---------------------------------------------------------
    def assign(self, job_id: JobId, offers: list[AcceptedSeat]) -> Receipt:
        seats = self.get_seats(job_id)
        return self._receipt(self.world.assign(self._address, job_id, seats, list(offers)))

    def settle(self, settlement: Settlement) -> Receipt:
        terms = self.job_terms(settlement.job_id)
        return self._receipt(self.world.settle(self._address, terms, settlement))

    def settle_batch(self, settlements: list[Settlement]) -> Receipt:
        batch = [(self._terms_or_none(s.job_id), s) for s in settlements]
        return self._receipt(self.world.settle_batch(self._address, batch))

    def abort(self, job_id: JobId) -> Receipt:
        seats = self.get_seats(job_id)
        return self._receipt(self.world.abort(self._address, job_id, seats))

    # market: provider (and anyone, for reveals) ------------------------------------
    def commit_on_chain(self, job_id: JobId, seat: int, commit_hash: bytes) -> Receipt:
        seats = self.get_seats(job_id)
        tx = self.world.commit_on_chain(self._address, job_id, seats, seat, commit_hash)
        return self._receipt(tx)

    def reveal_on_chain(
        self,
        job_id: JobId,
        seat: int,
        result: bytes,
        runtime_ms: int,
        salt: bytes,
        *,
        provider_signature: bytes = b"",
        receipt_signature: bytes = b"",
    ) -> Receipt:
        seats = self.get_seats(job_id)
        tx = self.world.reveal_on_chain(
            self._address,
            job_id,
            seats,
            seat,
            result,
            runtime_ms,
            salt,
            provider_signature,
            receipt_signature,
        )
        return self._receipt(tx)

    def finalize(self, job_id: JobId) -> Receipt:
        seats = self.get_seats(job_id)
        return self._receipt(self.world.finalize(self._address, job_id, seats))

    # market: reads ---------------------------------------------------------------
    def on_chain_entry(self, job_id: JobId, seat: int) -> OnChainEntry:
        e = self.world.entry(job_id, seat)
        return OnChainEntry(e.commit_hash, e.result, e.runtime_ms, e.committed, e.revealed, e.votes)

    def get_job(self, job_id: JobId) -> JobInfo:
        job = self.world.job(job_id)
        return JobInfo(
            job_id=job_id,
            status=job.status,
            assigned=len(job.seats),
            terms=job.terms,
            spec_digest=job.spec_digest,
            spec_cid=job.spec_cid,
            seats=tuple(job.seats),
            created_block=job.created_block,
        )

    def job_status(self, job_id: JobId) -> tuple[JobStatus, int]:
        job = self.world.jobs.get(bytes(job_id))
        if job is None:
            return JobStatus.NONE, 0
        return job.status, len(job.seats)

    def job_terms(self, job_id: JobId) -> JobTerms:
        return self.world.job(job_id).terms

    def get_seats(self, job_id: JobId) -> list[Seat]:
        return list(self.world.job(job_id).seats)

    def account_info(self, account: str) -> AccountInfo:
        a = self.world.account(account)
        return AccountInfo(owed=Wei(a.owed), lifetime=Wei(a.lifetime), nonce=a.nonce)

    def claimable(self, account: str) -> Wei:
        return Wei(self.world.account(account).owed + self.world.provider(account).earned)

    def burned(self) -> Wei:
        return Wei(self.world.burned)

    # helpers -------------------------------------------------------------------
    def _terms_or_none(self, job_id: JobId) -> JobTerms | None:
        job = self.world.jobs.get(bytes(job_id))
        return job.terms if job is not None else None

    def _receipt(self, tx: str) -> Receipt:
        events = tuple(e for e in self.world.events if e.tx_hash == tx)
        return Receipt(tx_hash=tx, block_number=self.world.block, gas_used=0, events=events)
