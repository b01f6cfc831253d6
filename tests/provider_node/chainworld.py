"""A market on the in-memory fake chain for provider tests: a bonded coordinator, a
requester, and registered, staked providers, with helpers to create jobs and seat a
provider with its own signed Accept (as the coordinator would)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from contracts.fake import FakeChain, FakeWorld
from contracts.models import AcceptedSeat, JobRequest
from protocol.eip712 import Signature
from protocol.identity import Identity
from protocol.ids import JobId, Wei, to_wei
from protocol.ipfs.cid import result_digest
from protocol.messages import Accept
from protocol.p2p.testing import dev_private_key

PRICE = Wei(to_wei("1"))
CAP = Wei(to_wei("2"))
RATE = Wei(to_wei("3.6"))
STAKE = Wei(to_wei("100"))
FACTOR = 5
COMMIT_WINDOW = 600
REVEAL_WINDOW = 300
SPEC_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def identities(tag: str) -> dict[str, Identity]:
    names = ("provider", "coordinator", "requester", "other", "minter")
    return {n: Identity.from_private_key(dev_private_key(i + 1, tag)) for i, n in enumerate(names)}


@dataclass
class ChainWorld:
    world: FakeWorld
    ids: dict[str, Identity]

    @classmethod
    def create(cls, tag: str, *, start_time: int | None = None) -> ChainWorld:
        ids = identities(tag)
        world = FakeWorld(
            stake_factor=FACTOR,
            start_time=int(time.time()) if start_time is None else start_time,
            minter=ids["minter"].address,
        )
        minter = world.client("0x" + ids["minter"].private_key.hex())
        for name in ("provider", "coordinator", "requester", "other"):
            minter.mint(ids[name].address, to_wei("1000"))
        cw = cls(world, ids)
        cw.chain("coordinator").bond_coordinator(to_wei("100"))
        for name in ("provider", "other"):
            cw.chain(name).register(0)
            cw.chain(name).stake(STAKE)
        return cw

    def chain(self, name: str) -> FakeChain:
        return self.world.client("0x" + self.ids[name].private_key.hex())

    @property
    def provider(self) -> Identity:
        return self.ids["provider"]

    @property
    def coordinator(self) -> Identity:
        return self.ids["coordinator"]

    def request(self, spec_cid: str = SPEC_CID, **overrides: Any) -> JobRequest:
        now = self.world.time
        spare = now + 900
        fields: dict[str, Any] = {
            "spec_digest": result_digest(spec_cid),
            "spec_cid": spec_cid,
            "coordinator": self.coordinator.address,
            "redundancy": 1,
            "price_cap": CAP,
            "fee": Wei(to_wei("0.1")),
            "timeout_ms": 60_000,
            "assign_deadline": now + 600,
            "commit_window": COMMIT_WINDOW,
            "reveal_window": REVEAL_WINDOW,
            "spare_deadline": spare,
            "settle_deadline": spare + COMMIT_WINDOW + REVEAL_WINDOW + 100,
        }
        fields.update(overrides)
        return JobRequest(**fields)

    def create_job(self, spec_cid: str = SPEC_CID, **overrides: Any) -> JobId:
        job_id, _ = self.chain("requester").create_job(self.request(spec_cid, **overrides))
        return job_id

    def seat(self, accept: Accept) -> None:
        """The coordinator's assign with the provider's Accept (the market verifies it)."""
        offer = AcceptedSeat(
            accept.provider,
            accept.price,
            accept.rate_per_hour,
            accept.expiry,
            Signature.from_bytes(accept.signature),
        )
        self.chain("coordinator").assign(accept.job_id, [offer])
