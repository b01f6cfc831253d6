"""One market scenario harness over either the in-memory fake or a real Anvil.

``Market`` gives every role a :class:`ChainClient` (requester, coordinator, providers,
deployer), a clock, and helpers that build signed settlements, so the same conformance
tests run against :class:`contracts.fake.FakeChain` and :class:`contracts.chain.Web3Chain`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from contracts.chain import ChainClient, Web3Chain
from contracts.deploy import deploy_all, fund_accounts
from contracts.eip712 import commit_hash, sign_commit, sign_reveal
from contracts.fake import FakeWorld
from contracts.models import (
    Assignment,
    CompareMode,
    Deployment,
    JobRequest,
    Settlement,
    SignedEntry,
)
from protocol.ids import JobId, Wei, to_wei

PRICE = to_wei("2.00")
CAP = to_wei("2.50")
FEE = to_wei("0.10")
STAKE = to_wei("100")
FUNDS = to_wei("1000")
MIN_STAKE = to_wei("50")
UNBONDING_S = 3600
FACTOR = 5
SPEC_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def deployment(self) -> Deployment:
        return self.requester.deployment

    def advance(self, seconds: int) -> None:
        if self.world is not None:
            self.world.advance(seconds)
        else:
            self.rpc("evm_increaseTime", [seconds])
            self.rpc("evm_mine", [])

    def create(
        self,
        redundancy: int = 2,
        *,
        mode: CompareMode = CompareMode.EXACT,
        cap: int = CAP,
        fee: int = FEE,
        client: ChainClient | None = None,
        **overrides: Any,
    ) -> JobId:
        client = client or self.requester
        now = client.now()
        fields: dict[str, Any] = {
            "spec_digest": b"\x11" * 32,
            "spec_cid": SPEC_CID,
            "coordinator": self.coordinator.address,
            "redundancy": redundancy,
            "price_cap": Wei(cap),
            "fee": Wei(fee),
            "assign_deadline": now + 600,
            "commit_deadline": now + 1200,
            "settle_deadline": now + 1800,
            "mode": mode,
        }
        fields.update(overrides)
        job_id, _ = client.create_job(JobRequest(**fields))
        return job_id

    def assignment(self, *indices: int, price: int = PRICE) -> list[Assignment]:
        return [Assignment(self.providers[i].address, Wei(price)) for i in indices]

    def reveal(self, index: int, job_id: JobId, result: bytes) -> SignedEntry:
        salt = os.urandom(32)
        key = self.accounts[f"provider{index}"]
        sig = sign_reveal(
            key, self.deployment.chain_id, self.deployment.market, job_id, result, salt
        )
        return SignedEntry.reveal(result, salt, sig)

    def commit_only(self, index: int, job_id: JobId, result: bytes) -> SignedEntry:
        key = self.accounts[f"provider{index}"]
        digest = commit_hash(result, os.urandom(32))
        sig = sign_commit(key, self.deployment.chain_id, self.deployment.market, job_id, digest)
        return SignedEntry.commit(digest, sig)

    def settlement(
        self,
        job_id: JobId,
        assignment: list[Assignment],
        results: list[bytes | None],
        winners: int = 0,
    ) -> Settlement:
        index_of = {p.address: i for i, p in enumerate(self.providers)}
        entries = tuple(
            SignedEntry.none() if r is None else self.reveal(index_of[a.provider], job_id, r)
            for a, r in zip(assignment, results, strict=True)
        )
        return Settlement(job_id, tuple(assignment), entries, winners)


def _accounts(keys: list[str]) -> dict[str, LocalAccount]:
    names = ["deployer", "requester", "coordinator"] + [f"provider{i}" for i in range(5)]
    return {name: Account.from_key(key) for name, key in zip(names, keys, strict=False)}


def _setup(m: Market) -> Market:
    """Providers register and stake; providers 3 and 4 share operator group 7."""
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
        minter=accounts["deployer"].address,
    )
    deployer = world.client(accounts["deployer"])
    for name, acct in accounts.items():
        if name != "deployer":
            deployer.mint(acct.address, FUNDS)
    providers: list[ChainClient] = [world.client(accounts[f"provider{i}"]) for i in range(5)]
    m = Market(
        "fake",
        deployer,
        world.client(accounts["requester"]),
        world.client(accounts["coordinator"]),
        providers,
        accounts,
        world=world,
    )
    return _setup(m)


def deploy_real(rpc_url: str, keys: list[str]) -> dict[str, str]:
    """Deploy and fund once; the per-test snapshot then isolates each test."""
    addresses = deploy_all(
        rpc_url, keys[0], unbonding_delay=UNBONDING_S, min_stake=MIN_STAKE, stake_factor=FACTOR
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
    providers: list[ChainClient] = [
        deployer.for_account(accounts[f"provider{i}"]) for i in range(5)
    ]
    m = Market(
        "anvil",
        deployer,
        deployer.for_account(accounts["requester"]),
        deployer.for_account(accounts["coordinator"]),
        providers,
        accounts,
        rpc=rpc,
    )
    return _setup(m)
