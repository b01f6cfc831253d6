"""One market scenario harness over either the in-memory fake or a real Anvil.

``Market`` gives every role a :class:`ChainClient` (deployer, requester, coordinator, five
providers), a clock that can pin the next block's timestamp, and helpers that build signed
offers, commitments, receipts, reveals and settlements, so the same conformance tests run
against :class:`contracts.fake.FakeChain` and :class:`contracts.chain.Web3Chain`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from contracts.chain import Web3Chain
from contracts.client import ChainClient
from contracts.deploy import deploy_all, fund_accounts
from contracts.fake import FakeWorld
from contracts.models import (
    AcceptedSeat,
    CompareMode,
    Deployment,
    JobRequest,
    JobTerms,
    Seat,
    Settlement,
    SignedEntry,
)
from protocol import eip712
from protocol.eip712 import Signature
from protocol.ids import JobId, Wei, to_wei

PRICE = to_wei("2.00")
CAP = to_wei("2.50")
FEE = to_wei("0.10")
RATE = to_wei("3.60")  # per hour: one base unit per millisecond
STAKE = to_wei("100")
FUNDS = to_wei("1000")
BOND = to_wei("100")
MIN_STAKE = to_wei("50")
MIN_PRICE = 1_000
UNBONDING_S = 3600
COORDINATOR_UNBOND_S = 91 * 24 * 3600
FACTOR = 5
COMMIT_WINDOW = 600
REVEAL_WINDOW = 300
TIMEOUT_MS = 500_000
SPEC_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
GOOD = b"\x01" * 32
BAD = b"\x02" * 32


@dataclass(frozen=True)
class Work:
    """What a provider computed: the result, its runtime and the salt of its commitment."""

    result: bytes
    runtime_ms: int = 100_000
    salt: bytes = field(default_factory=lambda: os.urandom(32))


@dataclass
class Market:
    kind: str
    deployer: ChainClient
    requester: ChainClient
    coordinator: ChainClient
    providers: list[ChainClient]
    accounts: dict[str, LocalAccount]
    world: FakeWorld | None = None
    rpc: Any = None
    rpc_url: str = ""
    _pin: int = 0  # Anvil: the pinned timestamp of the next block, while it is pending

    @property
    def deployment(self) -> Deployment:
        return self.requester.deployment

    @property
    def domain(self) -> eip712.Eip712Domain:
        return self.deployment.domain

    # clock ------------------------------------------------------------------
    def now(self) -> int:
        """The latest block's time, or just before a pinned next block (as on the fake)."""
        return max(self.requester.now(), self._pin - 1)

    def advance(self, seconds: int) -> None:
        if self.world is not None:
            self.world.advance(seconds)
        else:
            self.rpc("evm_increaseTime", [seconds])
            self.rpc("evm_mine", [])

    def next_at(self, timestamp: int) -> None:
        """The next transaction is mined at exactly ``timestamp`` (a failed one mines
        nothing, so the pin holds until a transaction succeeds)."""
        if self.world is not None:
            self.world.mine_next_at(timestamp)
        else:
            self.rpc("evm_setNextBlockTimestamp", [timestamp])
            self._pin = timestamp

    # jobs -------------------------------------------------------------------
    def request(
        self,
        redundancy: int = 2,
        *,
        mode: CompareMode = CompareMode.EXACT,
        cap: int = CAP,
        fee: int = FEE,
        **overrides: Any,
    ) -> JobRequest:
        now = self.now()
        spare = now + 900
        fields: dict[str, Any] = {
            "spec_digest": b"\x11" * 32,
            "spec_cid": SPEC_CID,
            "coordinator": self.coordinator.address,
            "redundancy": redundancy,
            "price_cap": Wei(cap),
            "fee": Wei(fee),
            "timeout_ms": TIMEOUT_MS,
            "assign_deadline": now + 600,
            "commit_window": COMMIT_WINDOW,
            "reveal_window": REVEAL_WINDOW,
            "spare_deadline": spare,
            "settle_deadline": spare + COMMIT_WINDOW + REVEAL_WINDOW + 100,
            "mode": mode,
        }
        fields.update(overrides)
        return JobRequest(**fields)

    def create(self, redundancy: int = 2, *, client: ChainClient | None = None, **kw: Any) -> JobId:
        job_id, _ = (client or self.requester).create_job(self.request(redundancy, **kw))
        return job_id

    def terms(self, job_id: JobId) -> JobTerms:
        return self.requester.job_terms(job_id)

    def seats(self, job_id: JobId) -> list[Seat]:
        return self.requester.get_seats(job_id)

    def offer(
        self,
        job_id: JobId,
        provider: int,
        seat: int,
        *,
        price: int = PRICE,
        rate: int = RATE,
        expiry: int | None = None,
        signer: int | None = None,
        terms_hash: bytes | None = None,
    ) -> AcceptedSeat:
        """Provider ``provider``'s signed Accept for ``seat`` (``signer`` signs instead when
        given, to forge one)."""
        address = self.providers[provider].address
        expiry = self.now() + 3600 if expiry is None else expiry
        th = self.terms(job_id).terms_hash() if terms_hash is None else terms_hash
        key = self.key(provider if signer is None else signer)
        sig = eip712.sign_accept(key, self.domain, job_id, address, seat, price, rate, th, expiry)
        return AcceptedSeat(address, Wei(price), Wei(rate), expiry, Signature.from_bytes(sig))

    def offers(
        self, job_id: JobId, *providers: int, first_seat: int | None = None, **kw: Any
    ) -> list[AcceptedSeat]:
        start = len(self.seats(job_id)) if first_seat is None else first_seat
        return [self.offer(job_id, p, start + i, **kw) for i, p in enumerate(providers)]

    def assign(self, job_id: JobId, *providers: int, **kw: Any) -> list[Seat]:
        """Seat ``providers`` (in order, after the seats already there); returns all seats."""
        self.coordinator.assign(job_id, self.offers(job_id, *providers, **kw))
        return self.seats(job_id)

    # commitments and reveals --------------------------------------------------
    def key(self, provider: int) -> LocalAccount:
        return self.accounts[f"provider{provider}"]

    def index_of(self, address: str) -> int:
        return [str(p.address) for p in self.providers].index(address)

    def commit_hash(self, job_id: JobId, seat: Seat, work: Work) -> bytes:
        return eip712.commit_hash(job_id, seat.provider, work.result, work.runtime_ms, work.salt)

    def reveal_sig(self, job_id: JobId, seat: Seat, work: Work) -> bytes:
        key = self.key(self.index_of(seat.provider))
        return eip712.sign_reveal(
            key, self.domain, job_id, seat.provider, work.result, work.runtime_ms, work.salt
        )

    def receipt_sig(self, job_id: JobId, seat_index: int, seat: Seat, work: Work) -> bytes:
        """The coordinator's CommitReceipt for this seat's commitment."""
        return eip712.sign_receipt(
            self.accounts["coordinator"],
            self.domain,
            job_id,
            seat.provider,
            seat_index,
            self.commit_hash(job_id, seat, work),
        )

    def reveal_entry(self, job_id: JobId, seat: Seat, work: Work) -> SignedEntry:
        sig = Signature.from_bytes(self.reveal_sig(job_id, seat, work))
        return SignedEntry.reveal(work.result, work.runtime_ms, work.salt, sig)

    def commit_entry(self, job_id: JobId, seat: Seat, work: Work) -> SignedEntry:
        digest = self.commit_hash(job_id, seat, work)
        key = self.key(self.index_of(seat.provider))
        sig = eip712.sign_commit(key, self.domain, job_id, seat.provider, digest)
        return SignedEntry.commit(digest, Signature.from_bytes(sig))

    def settlement(
        self, job_id: JobId, works: list[Work | bytes | None], winners: int = 0
    ) -> Settlement:
        """Every seat's signed Reveal (``None``: no entry; bytes: a result, 100 s runtime)."""
        seats = self.seats(job_id)
        entries = []
        for seat, w in zip(seats, works, strict=True):
            if w is None:
                entries.append(SignedEntry.none())
            else:
                work = w if isinstance(w, Work) else Work(w)
                entries.append(self.reveal_entry(job_id, seat, work))
        return Settlement(job_id, tuple(seats), tuple(entries), winners)

    def reveal_open(self, job_id: JobId) -> int:
        return self.terms(job_id).reveal_open(self.seats(job_id))

    def reveal_close(self, job_id: JobId) -> int:
        return self.terms(job_id).reveal_close(self.seats(job_id))

    def settle_after(self, job_id: JobId) -> int:
        return self.terms(job_id).settle_deadline + 1

    def deploy_market(self, **overrides: Any) -> None:
        """Deploy another market with the harness's parameters changed by ``overrides``
        (``deploy_all``'s keywords); on Anvil it reuses this market's token."""
        params: dict[str, Any] = {
            "min_stake": MIN_STAKE,
            "unbonding_delay": UNBONDING_S,
            "stake_factor": FACTOR,
            "min_price": MIN_PRICE,
            "min_coordinator_bond": BOND,
            "coordinator_unbond_delay": COORDINATOR_UNBOND_S,
        }
        params.update(overrides)
        if self.world is not None:
            FakeWorld(**params)
        else:
            key = "0x" + bytes(self.accounts["deployer"].key).hex()
            deploy_all(self.rpc_url, key, token=self.deployment.token, **params)

    # money --------------------------------------------------------------------
    def held_by_market(self) -> int:
        return self.requester.token_balance(self.deployment.market)

    def claim_all(self) -> None:
        for c in (self.requester, self.coordinator, *self.providers):
            if c.claimable(c.address):
                c.claim()


def _accounts(keys: list[str]) -> dict[str, LocalAccount]:
    names = ["deployer", "requester", "coordinator"] + [f"provider{i}" for i in range(5)]
    return {name: Account.from_key(key) for name, key in zip(names, keys, strict=False)}


def _setup(m: Market) -> Market:
    """The coordinator bonds; providers register and stake; providers 3 and 4 share
    operator group 7."""
    m.coordinator.bond_coordinator(BOND)
    for i, p in enumerate(m.providers):
        p.register(7 if i >= 3 else 0)
        p.stake(STAKE)
    return m


def fake_market(keys: list[str]) -> Market:
    accounts = _accounts(keys)
    world = FakeWorld(
        min_stake=MIN_STAKE,
        unbonding_delay=UNBONDING_S,
        stake_factor=FACTOR,
        min_price=MIN_PRICE,
        min_coordinator_bond=BOND,
        coordinator_unbond_delay=COORDINATOR_UNBOND_S,
        minter=accounts["deployer"].address,
    )
    deployer = world.client(accounts["deployer"])
    for name, acct in accounts.items():
        if name != "deployer":
            deployer.mint(acct.address, FUNDS)
    m = Market(
        "fake",
        deployer,
        world.client(accounts["requester"]),
        world.client(accounts["coordinator"]),
        [world.client(accounts[f"provider{i}"]) for i in range(5)],
        accounts,
        world=world,
    )
    return _setup(m)


def deploy_real(rpc_url: str, keys: list[str]) -> dict[str, str]:
    """Deploy and fund once; the per-test snapshot then isolates each test."""
    addresses = deploy_all(
        rpc_url,
        keys[0],
        unbonding_delay=UNBONDING_S,
        min_stake=MIN_STAKE,
        stake_factor=FACTOR,
        min_price=MIN_PRICE,
        min_coordinator_bond=BOND,
        coordinator_unbond_delay=COORDINATOR_UNBOND_S,
    )
    accounts = _accounts(keys)
    others = [a.address for n, a in accounts.items() if n != "deployer"]
    fund_accounts(rpc_url, keys[0], addresses["token"], others, FUNDS)
    return addresses


def real_market(
    rpc_url: str, chain_id: int, addresses: dict[str, str], keys: list[str], rpc: Any
) -> Market:
    accounts = _accounts(keys)
    deployment = Deployment.from_addresses(chain_id, addresses)
    deployer = Web3Chain(rpc_url, deployment, accounts["deployer"])
    m = Market(
        "anvil",
        deployer,
        deployer.for_account(accounts["requester"]),
        deployer.for_account(accounts["coordinator"]),
        [deployer.for_account(accounts[f"provider{i}"]) for i in range(5)],
        accounts,
        rpc=rpc,
        rpc_url=rpc_url,
    )
    return _setup(m)
