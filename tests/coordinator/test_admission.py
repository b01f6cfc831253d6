"""Strangers cannot fill the coordinator: adverts of keys not registered and staked on chain
are dropped before any signature check, book write, reputation row, challenge or dial; the
book and the challenge queue are bounded."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

import coordinator.service as service
from contracts.fake import FakeWorld
from coordinator.chain.chain_io import AsyncChain
from coordinator.chain.watcher import ChainWatcher
from coordinator.matching.admission import Admission
from coordinator.matching.book import ProviderBook
from coordinator.service import Coordinator
from coordinator.signals import Signals
from coordinator.store import AsyncStore, Store
from coordinator.verification.challenger import Challenger
from coordinator.verification.reputation import ReputationBook
from coordinator.wire.transport import FakeTransport
from devnet.harness import identity
from protocol.clock import ManualClock
from protocol.errors import GpuMarketError
from protocol.identity import Identity
from protocol.ids import PeerId, Wei, to_wei
from protocol.messages import Advert, Benchmark, Fingerprint
from protocol.p2p.adverts import NotAdmitted, advert_validator
from protocol.p2p.gossip import Delivery
from protocol.registry import ADVERT_TOPIC
from protocol.signing import SignedMessage, Verifier, encode_signed, sign_message

STAKE = to_wei("100")


class CountingVerifier(Verifier):
    """A verifier that counts the signatures it was asked to check."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0

    def open(self, *args: Any, **kwargs: Any) -> Any:
        self.opened += 1
        return super().open(*args, **kwargs)


class Chain:
    """The in-memory chain with a coordinator's view of it and a minter."""

    def __init__(self) -> None:
        self.coordinator, self.minter = identity(0, "admission"), identity(1, "admission")
        self.world = FakeWorld(start_time=int(time.time()), minter=self.minter.address)
        self.chain = AsyncChain(self.world.client("0x" + self.coordinator.private_key.hex()))
        self.min_stake = self.world.min_stake

    def client(self, who: Identity) -> Any:
        return self.world.client("0x" + who.private_key.hex())

    def provider(self, i: int, *, register: bool = True, stake: int = STAKE) -> Identity:
        who = identity(100 + i, "admission")
        self.client(self.minter).mint(who.address, to_wei("1000"))
        if register:
            self.client(who).register(0)
        if stake:
            self.client(who).stake(stake)
        return who


def advert(who: Identity, seq: int = 1) -> Advert:
    return Advert(
        provider=who.address,
        peer_id=who.peer_id,
        multiaddrs=("/ip4/127.0.0.1/tcp/1",),
        gpus=(),
        benchmark=Benchmark(tflops={"fp32": 0.01}, memory_bandwidth_gbps=10.0),
        fingerprint=Fingerprint(backend="cpu", gpu_model="cpu", torch="2.13.0"),
        price_per_gpu_hour=Wei(1),
        price_per_cpu_hour=Wei(1),
        free_gpus=0,
        utilization=0.0,
        runtimes=("torch",),
        software={"gpumarket": "test"},
        seq=seq,
        expires_at=int(time.time()) + 60,
    )


def gossip(who: Identity, seq: int = 1) -> tuple[bytes, PeerId]:
    return encode_signed(sign_message(advert(who, seq), who)), PeerId(who.peer_id)


@pytest.fixture
def chain() -> Chain:
    return Chain()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AsyncStore]:
    sync = Store(f"sqlite:///{tmp_path / 'coordinator.sqlite'}")
    try:
        yield AsyncStore(sync)
    finally:
        sync.close()


async def follow(chain: Chain, store: AsyncStore, admission: Admission) -> None:
    """What the coordinator's chain watcher and admission task do, once."""
    watcher = ChainWatcher(chain.chain, store, Signals(), lambda _job: None)
    watcher.observers.append(admission.observe)
    await watcher.poll_once()
    await admission.refresh()


@pytest.mark.timeout(30)
async def test_a_strangers_advert_is_dropped_before_any_work(
    chain: Chain, store: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest = chain.provider(0)
    unregistered = chain.provider(1, register=False, stake=0)
    unstaked = chain.provider(2, stake=0)
    admission = Admission(chain.chain, chain.min_stake)
    await follow(chain, store, admission)
    assert admission.admitted == {honest.address}

    # The coordinator's own advert loop, with the subscription replaced by one that runs
    # the validator the coordinator asks for on what three peers publish.
    rejected: list[GpuMarketError] = []
    messages = [gossip(unregistered), gossip(unstaked), gossip(honest)]

    @asynccontextmanager
    async def subscribe_adverts(
        node: object,
        verifier: Verifier | None = None,
        *,
        topic: str = ADVERT_TOPIC,
        admit: Any = None,
    ) -> AsyncIterator[AsyncIterator[Delivery[SignedMessage]]]:
        validate = advert_validator(verifier or Verifier(), admit)

        async def deliveries() -> AsyncIterator[Delivery[SignedMessage]]:
            for data, sender in messages:
                try:
                    value = validate(data, sender)
                except GpuMarketError as exc:
                    rejected.append(exc)
                    continue
                yield Delivery(value, sender, topic)

        yield deliveries()

    monkeypatch.setattr(service, "subscribe_adverts", subscribe_adverts)
    verifier = CountingVerifier()
    book = ProviderBook(time.time, verifier=verifier)
    transport = FakeTransport()
    c = Coordinator.__new__(Coordinator)
    c.node = object()  # type: ignore[assignment]
    c.settings = SimpleNamespace(poll_interval_s=0.01)  # type: ignore[assignment]
    c.book, c.admission, c.chain, c.store = book, admission, chain.chain, store
    c.reputation = ReputationBook(time.time)
    c.challenger = Challenger(chain.coordinator, transport, book)

    await c._adverts()
    assert [type(e) for e in rejected] == [NotAdmitted, NotAdmitted]
    assert verifier.opened == 1  # only the honest advert's signature was checked
    assert set(book.entries) == {honest.address}
    assert c.challenger.pending == {honest.address}
    async with trio.open_nursery() as nursery:  # book maintenance and challenges run a while
        nursery.start_soon(c._maintain_book)
        nursery.start_soon(c.challenger.run)
        await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    assert set((await store.reputations()).keys()) == {honest.address}
    assert {peer for peer, _, _ in transport.sent} == {honest.peer_id}  # nobody else dialled


async def test_a_provider_that_stakes_is_admitted_after_the_refresh(
    chain: Chain, store: AsyncStore
) -> None:
    clock = ManualClock(1000.0)
    admission = Admission(chain.chain, chain.min_stake, clock=clock.now, lookup_interval_s=10)
    newcomer = chain.provider(0, stake=0)
    assert not admission.admits(newcomer.address)  # queued for one lookup
    await follow(chain, store, admission)
    assert not admission.admits(newcomer.address)  # registered, no stake

    chain.client(newcomer).stake(STAKE)
    await follow(chain, store, admission)  # the Staked event, not the lookup, admits it
    assert admission.admits(newcomer.address)

    # After a restart (no events replayed), the first advert's lookup admits it.
    restarted = Admission(chain.chain, chain.min_stake, clock=clock.now, lookup_interval_s=10)
    assert not restarted.admits(newcomer.address)
    assert await restarted.refresh() == 1
    assert restarted.admits(newcomer.address)


async def test_unknown_addresses_are_looked_up_rarely_and_boundedly(chain: Chain) -> None:
    clock = ManualClock(1000.0)
    admission = Admission(
        chain.chain, chain.min_stake, clock=clock.now, lookup_interval_s=10, max_queued=2
    )
    stranger = identity(200, "admission")
    for _ in range(100):
        assert not admission.admits(stranger.address)
    assert await admission.refresh() == 1  # a hundred adverts, one chain read
    clock.advance(5)
    assert not admission.admits(stranger.address)
    assert await admission.refresh() == 0
    clock.advance(6)
    assert not admission.admits(stranger.address)
    assert await admission.refresh() == 1

    for i in range(5):
        admission.admits(identity(300 + i, "admission").address)
    assert admission.dropped == 3
    assert await admission.refresh() == 2


async def test_slashed_or_unbonded_below_the_minimum_is_no_longer_admitted(
    chain: Chain, store: AsyncStore
) -> None:
    slashed, unbonded, kept = chain.provider(0), chain.provider(1), chain.provider(2)
    admission = Admission(chain.chain, chain.min_stake)
    await follow(chain, store, admission)
    assert admission.admitted == {slashed.address, unbonded.address, kept.address}

    chain.client(unbonded).request_unbond(STAKE - chain.min_stake + 1)
    chain.client(kept).request_unbond(STAKE - chain.min_stake)  # exactly the minimum left
    # A slash as the market records it (settling a job with a wrong result does this).
    world = chain.world
    world._mine(slashed.address)
    world.providers[slashed.address].stake -= STAKE - chain.min_stake + 1
    world._emit("market", "ProviderSlashed", jobId=b"\0" * 32, provider=slashed.address, amount=1)
    await follow(chain, store, admission)
    assert admission.admitted == {kept.address}
    assert not admission.admits(slashed.address) and not admission.admits(unbonded.address)


def test_the_book_refuses_providers_beyond_its_cap() -> None:
    book = ProviderBook(time.time, max_providers=2)
    first, second, third = (identity(400 + i, "admission") for i in range(3))
    assert book.accept(advert(first)) and book.accept(advert(second))
    assert not book.accept(advert(third))
    assert len(book) == 2 and book.find(third.address) is None and book.refused == 1
    assert book.columns.slot(third.address) is None
    assert book.accept(advert(first, seq=2))  # those already in keep being updated
    found = book.find(first.address)
    assert found is not None and found.seq == 2


async def test_the_challenge_queue_holds_one_entry_per_advertiser() -> None:
    coordinator = identity(0, "admission")
    book = ProviderBook(time.time)
    challenger = Challenger(coordinator, FakeTransport(), book, max_queued=2)
    first, second, third = (identity(500 + i, "admission") for i in range(3))
    assert challenger.enqueue(first.address)
    for _ in range(10):
        assert not challenger.enqueue(first.address)
    assert challenger.enqueue(second.address)
    assert not challenger.enqueue(third.address) and challenger.refused == 1
    assert challenger._receive.statistics().current_buffer_used == 2
    async with trio.open_nursery() as nursery:  # neither is in the book: nothing to run
        nursery.start_soon(challenger.run)
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert challenger.pending == set()
    assert challenger.enqueue(first.address)  # challenged once, may be challenged again
