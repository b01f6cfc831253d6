"""A deployed market on the test Anvil, with a bonded coordinator, a requester and staked
providers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from multiformats import CID

from contracts.chain import Web3Chain
from contracts.deploy import deploy_all, fund_accounts
from contracts.models import CompareMode, Deployment, JobRequest
from coordinator.settings import CoordinatorSettings
from devnet.anvil import AnvilNode
from protocol import eip712
from protocol.identity import Identity
from protocol.ids import JobId, to_wei
from protocol.ipfs.memory import MemoryContentStore
from protocol.ipfs.store import ContentStore
from protocol.spec_io import canonical_spec, parse_spec

SPEC = """
name: coordinator-test
runtime: {kind: torch, entrypoint: main.py}
resources: {gpus: 0}
verification: {redundancy: 2, compare: exact}
price: {max_per_provider: "2.50"}
timeout: 10m
"""
ASSIGN_WINDOW_S = 120
COMMIT_WINDOW_S = 20
REVEAL_WINDOW_S = 20


@dataclass
class Market:
    anvil: AnvilNode
    deployment: Deployment
    coordinator: Identity
    requester: Identity
    providers: list[Identity]
    content: ContentStore

    @property
    def domain(self) -> eip712.Eip712Domain:
        return eip712.Eip712Domain(self.deployment.chain_id, self.deployment.market)

    def client(self, who: Identity) -> Web3Chain:
        return Web3Chain(self.anvil.rpc_url, self.deployment, "0x" + who.private_key.hex())

    def settings(self, data_dir: Path, **overrides: Any) -> CoordinatorSettings:
        fields: dict[str, Any] = {
            "rpc_url": self.anvil.rpc_url,
            "market_address": self.deployment.market,
            "registry_address": self.deployment.registry,
            "token_address": self.deployment.token,
            "private_key": "0x" + self.coordinator.private_key.hex(),
            "ipfs_api": "http://127.0.0.1:9",
            "data_dir": data_dir,
            "challenges": False,
            "poll_interval_s": 0.2,
            "settle_window_s": 0.2,
            "request_timeout_s": 3.0,
            "reveal_timeout_s": 5.0,
            "provider_ttl_s": 10.0,
            "stake_refresh_s": 0.5,
            "exploration_share": 0.0,
        }
        fields.update(overrides)
        return CoordinatorSettings(**fields)

    def request(
        self,
        spec_cid: str,
        now: int,
        redundancy: int = 2,
        *,
        mode: CompareMode = CompareMode.EXACT,
        commit_window: int = COMMIT_WINDOW_S,
        reveal_window: int = REVEAL_WINDOW_S,
    ) -> JobRequest:
        """A job request with short windows: a seat that failed stays live (and blocks an
        early settlement) only until its commit deadline, ``commit_window`` after it."""
        spare = now + ASSIGN_WINDOW_S
        return JobRequest(
            spec_digest=bytes(CID.decode(spec_cid).raw_digest),
            spec_cid=spec_cid,
            coordinator=self.coordinator.address,
            redundancy=redundancy,
            price_cap=to_wei("2.50"),
            fee=to_wei("0.10"),
            timeout_ms=commit_window * 1000,
            assign_deadline=spare,
            commit_window=commit_window,
            reveal_window=reveal_window,
            spare_deadline=spare,
            settle_deadline=spare + commit_window + reveal_window + 60,
            mode=mode,
        )

    async def create_job(
        self, redundancy: int = 2, spec: str = SPEC, *, mode: CompareMode = CompareMode.EXACT
    ) -> JobId:
        data = canonical_spec(parse_spec(spec))
        cid = await self.content.add_bytes(data)
        client = self.client(self.requester)

        def create() -> JobId:
            job_id, _ = client.create_job(self.request(cid, client.now(), redundancy, mode=mode))
            return job_id

        return await trio.to_thread.run_sync(create)


def deploy_market(anvil: AnvilNode, providers: int = 4, *, register: bool = True) -> Market:
    accounts = anvil.accounts
    deployer = accounts[0].private_key
    addresses = deploy_all(anvil.rpc_url, deployer)
    deployment = Deployment.from_addresses(anvil.chain_id, addresses)
    coordinator = Identity.from_private_key(accounts[1].private_key)
    requester = Identity.from_private_key(accounts[2].private_key)
    provider_ids = [Identity.from_private_key(a.private_key) for a in accounts[3 : 3 + providers]]
    fund_accounts(
        anvil.rpc_url,
        deployer,
        addresses["token"],
        [requester.address, *[p.address for p in provider_ids]],
        to_wei("1000"),
    )
    fund_accounts(
        anvil.rpc_url, deployer, addresses["token"], [coordinator.address], to_wei("1000")
    )
    market = Market(anvil, deployment, coordinator, requester, provider_ids, MemoryContentStore())
    market.client(coordinator).bond_coordinator(to_wei("100"))
    for p in provider_ids if register else ():
        client = market.client(p)
        client.register()
        client.stake(to_wei("100"))
    return market
