"""A coordinator driven step by step over the in-memory chain, with scripted providers.

Everything is real except the chain (``contracts.fake``, same rules and errors as the
contract), the content store (in memory) and the transport (in-process handlers): the
driver, offers, assigner, matcher, dispatcher, report handler, settler, watcher and store.
Tests call :meth:`Harness.run` to step a job until a condition holds, moving the fake
chain's clock with ``world.advance`` where a deadline matters. The market simulator
(``bench/verification.py``) runs thousands of jobs through it: ``pause_s=0`` steps
without sleeping, and a second harness can share the first one's ``world`` (another
coordinator with its own providers, told apart by ``tag``).
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio
import trio.testing
from multiformats import CID

from contracts.fake import FakeChain, FakeWorld
from contracts.models import CompareMode, JobRequest
from coordinator.chain.chain_io import AsyncChain
from coordinator.chain.settlement import Settler
from coordinator.chain.watcher import ChainWatcher
from coordinator.lifecycle.assigning import Assigner
from coordinator.lifecycle.config import DriverConfig
from coordinator.lifecycle.driver import JobDriver
from coordinator.lifecycle.offers import Offerer
from coordinator.matching.book import ProviderBook
from coordinator.matching.matcher import Matcher
from coordinator.signals import Signals
from coordinator.store import AsyncStore, JobRecord, ProviderSlot, Store
from coordinator.verification.reputation import ReputationBook
from coordinator.wire.dispatcher import Dispatcher
from coordinator.wire.reports import ReportHandler
from coordinator.wire.transport import FakeTransport
from devnet.scripted_provider import FakeProvider
from proofs.policy import StakeAwarePolicy, VerificationPolicy
from protocol.identity import Identity
from protocol.ids import JobId, PeerId, to_wei
from protocol.ipfs.memory import MemoryContentStore
from protocol.p2p.testing import dev_private_key
from protocol.spec_io import canonical_spec, parse_spec

T = TypeVar("T")
SPEC = """
name: coordinator-unit
runtime: {kind: torch, entrypoint: main.py}
resources: {gpus: 0}
verification: {redundancy: 2, compare: exact}
price: {max_per_provider: "2.50"}
timeout: 10m
"""
COMMIT_WINDOW = 600
REVEAL_WINDOW = 300
RATE = to_wei("1")  # per hour: a 10-minute timeout prices a seat at 1/6 token
STAKE = to_wei("100")


class InlineStore(AsyncStore):
    """The store without worker threads: each call runs on the trio thread (between
    checkpoints), which is what makes thousands of simulated jobs fast."""

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        await trio.lowlevel.checkpoint()
        return fn(*args, **kwargs)


class InlineChain(AsyncChain):
    """The chain client without worker threads (the fake chain never blocks)."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        await trio.lowlevel.checkpoint()
        return fn(*args)


def identity(i: int, tag: str = "coordinator-unit") -> Identity:
    return Identity.from_private_key(dev_private_key(i, tag))


@dataclass
class Harness:
    world: FakeWorld
    coordinator: Identity
    requester: Identity
    providers: list[FakeProvider]
    store: AsyncStore
    content: MemoryContentStore
    book: ProviderBook
    driver: JobDriver
    watcher: ChainWatcher
    reports: ReportHandler
    transport: FakeTransport
    signals: Signals
    woken: list[str] = field(default_factory=list)
    pause_s: float = 0.01
    """How long a step lets providers' background work run (0: until every task waits)."""

    def chain(self, who: Identity) -> FakeChain:
        return self.world.client("0x" + who.private_key.hex())

    def now(self) -> float:
        return float(self.world.time)

    def provider(self, address: str) -> FakeProvider:
        return next(p for p in self.providers if p.address == address)

    async def create_job(
        self,
        redundancy: int = 2,
        *,
        mode: CompareMode = CompareMode.EXACT,
        spec: bytes | None = None,
        **overrides: Any,
    ) -> str:
        """Create a job on the chain (``spec``: raw spec bytes, the valid SPEC by default)."""
        data = canonical_spec(parse_spec(SPEC)) if spec is None else spec
        cid = await self.content.add_bytes(data)
        now = self.world.time
        fields: dict[str, Any] = {
            "spec_digest": bytes(CID.decode(cid).raw_digest),
            "spec_cid": cid,
            "coordinator": self.coordinator.address,
            "redundancy": redundancy,
            "price_cap": to_wei("2.50"),
            "fee": to_wei("0.10"),
            "timeout_ms": 600_000,
            "assign_deadline": now + 300,
            "commit_window": COMMIT_WINDOW,
            "reveal_window": REVEAL_WINDOW,
            "spare_deadline": now + 900,
            "settle_deadline": now + 900 + COMMIT_WINDOW + REVEAL_WINDOW + 300,
            "mode": mode,
        }
        fields.update(overrides)
        job_id, _ = self.chain(self.requester).create_job(JobRequest(**fields))
        await self.watcher.poll_once()
        return "0x" + bytes(job_id).hex()

    async def job(self, job_id: str) -> JobRecord:
        return await self.store.get_job(job_id)

    async def slots(self, job_id: str) -> list[ProviderSlot]:
        return await self.store.slots(job_id)

    async def step(self, job_id: str) -> bool:
        await self.watcher.poll_once()
        done = await self.driver.step(job_id)
        # Let providers' background work (commitments) run.
        if self.pause_s > 0:
            await trio.sleep(self.pause_s)
        else:
            await trio.testing.wait_all_tasks_blocked()
        await self.watcher.poll_once()
        return done

    async def run(
        self,
        job_id: str,
        until: Callable[[JobRecord], bool],
        *,
        steps: int = 60,
        advance: int = 0,
    ) -> JobRecord:
        """Step the job until ``until(job)`` holds (moving the chain ``advance`` s a step)."""
        for _ in range(steps):
            job = await self.job(job_id)
            if until(job):
                return job
            await self.step(job_id)
            if advance:
                self.world.advance(advance)
        job = await self.job(job_id)
        slots = [(s.idx, s.address[:8], s.state, s.detail) for s in await self.slots(job_id)]
        raise AssertionError(f"job stuck in {job.state} ({job.failure_reason}): {slots}")


@asynccontextmanager
async def harness(
    tmp_path: Path,
    providers: int = 3,
    *,
    groups: list[int] | None = None,
    rates: list[int] | None = None,
    world: FakeWorld | None = None,
    tag: str = "coordinator-unit",
    seed: int = 7,
    pause_s: float = 0.01,
    policy: VerificationPolicy | None = None,
    inline: bool = False,
    **provider_kw: Any,
) -> AsyncIterator[Harness]:
    """A coordinator with ``providers`` registered, staked, advertised providers (the
    matcher prefers the cheapest: give ``rates`` to fix who gets which seat).

    ``world``: share another harness's chain (give a different ``tag``: it names every
    key of this harness); ``seed`` seeds the driver's spot-check draws; ``inline`` runs
    store and chain calls on the trio thread instead of worker threads."""
    minter = identity(2)
    coordinator, requester = identity(0, tag), identity(1, tag)
    if world is None:
        world = FakeWorld(start_time=int(time.time()), minter=minter.address)
    mint = world.client("0x" + minter.private_key.hex())
    people = [identity(10 + i, tag) for i in range(providers)]
    for who in (coordinator, requester, *people):
        mint.mint(who.address, to_wei("1000"))
    world.client("0x" + coordinator.private_key.hex()).bond_coordinator(to_wei("100"))
    groups = groups or [0] * providers
    for i, who in enumerate(people):
        client = world.client("0x" + who.private_key.hex())
        client.register(groups[i])
        client.stake(STAKE)

    name = "coordinator" if tag == "coordinator-unit" else tag
    store = (InlineStore if inline else AsyncStore)(Store(f"sqlite:///{tmp_path / name}.sqlite"))
    content = MemoryContentStore()
    signals = Signals()
    client = world.client("0x" + coordinator.private_key.hex())
    chain = (InlineChain if inline else AsyncChain)(client)
    domain = client.deployment.domain
    chain_now = lambda: float(world.time)  # noqa: E731
    book = ProviderBook(time.time, ttl_s=3600)
    transport = FakeTransport()
    dispatcher = Dispatcher(coordinator, transport, timeout_s=2.0)
    offerer = Offerer(
        coordinator, store, chain, book, dispatcher, signals, domain, chain_now=chain_now
    )
    matcher = Matcher(book.columns, stake_factor=world.stake_factor, exploration_share=0.0)
    assigner = Assigner(store, chain, book, matcher, offerer)
    assigner.chain_now = chain_now
    settler = Settler(chain, window_s=0.0)
    policy = policy or StakeAwarePolicy()
    rng = random.Random(seed)  # newcomers are always checked: the policy replicates them
    driver = JobDriver(
        identity=coordinator,
        store=store,
        chain=chain,
        content=content,
        book=book,
        assigner=assigner,
        dispatcher=dispatcher,
        settler=settler,
        reputation=ReputationBook(time.time),
        signals=signals,
        domain=domain,
        chain_now=chain_now,
        config=DriverConfig(request_timeout_s=2.0, reveal_timeout_s=2.0, policy=policy, rng=rng),
    )
    woken: list[str] = []
    watcher = ChainWatcher(chain, store, signals, woken.append)
    reports = ReportHandler(
        coordinator, store, signals, domain, driver.accept_reveal, chain_now=chain_now
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(settler.run)
        fakes = []
        for i, who in enumerate(people):
            fake = FakeProvider(
                who,
                domain,
                chain=world.client(who.address),
                nursery=nursery,
                report=reports.handle,
                price_per_hour=(rates or [RATE] * providers)[i],
                commit_delay_s=0.0,
                **provider_kw,
            )
            addr = f"/ip4/127.0.0.1/tcp/{4000 + i}"
            book.accept(fake.advert((addr,)))
            book.set_chain_facts(who.address, registered=True, free_stake=STAKE, group=groups[i])
            transport.handlers[who.peer_id] = _handler(fake, PeerId(coordinator.peer_id))
            fakes.append(fake)
        try:
            yield Harness(
                world,
                coordinator,
                requester,
                fakes,
                store,
                content,
                book,
                driver,
                watcher,
                reports,
                transport,
                signals,
                woken,
                pause_s,
            )
        finally:
            nursery.cancel_scope.cancel()
            store.sync.close()


def _handler(fake: FakeProvider, coordinator: PeerId) -> Callable[..., Any]:
    async def handle(protocol_id: str, payload: bytes) -> bytes:
        return await fake.handle(payload, coordinator)

    return handle


__all__ = [
    "COMMIT_WINDOW",
    "REVEAL_WINDOW",
    "Harness",
    "InlineChain",
    "InlineStore",
    "JobId",
    "harness",
    "identity",
]
