"""The provider's link to its coordinator survives a coordinator restart.

On real libp2p hosts on loopback: a stand-in coordinator (a bare host on a fixed port, the
same key each time) is stopped and started again, and the provider daemon (chain, content
store and runtime faked) must notice, redial and get its adverts to the new process within
seconds. The redial loop itself is also run on a fake node under trio's mock clock, to
check its backoff, its cap, and that no dial failure ends it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
import trio
import trio.testing

from contracts.models import ProviderInfo, Receipt
from protocol.errors import ConfigError
from protocol.identity import Identity
from protocol.ids import Address, PeerId, Wei
from protocol.ipfs.memory import MemoryContentStore
from protocol.messages import Advert
from protocol.p2p.adverts import subscribe_adverts
from protocol.p2p.errors import DialError
from protocol.p2p.host import Node, open_host
from protocol.p2p.testing import dev_private_key
from protocol.signing import Verifier
from provider_node.coordinator_link import Backoff, CoordinatorLink, coordinator_peer
from provider_node.daemon import ProviderNode
from provider_node.runtimes import create_runtime
from provider_node.settings import ProviderSettings
from tests.provider_node.factories import CPU_OFFER

pytestmark = pytest.mark.timeout(60)

PROVIDER = Identity.from_private_key(dev_private_key(1, "reconnect"))
COORDINATOR = Identity.from_private_key(dev_private_key(2, "reconnect"))
ADVERT_WAIT_S = 10.0
"""How long the restarted coordinator may wait for the provider's first advert."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class StakedChain:
    """A chain on which the provider is already registered and staked."""

    address: Address = PROVIDER.address

    def gas_shortfall(self, gas: int) -> None:
        return None

    def provider_info(self, provider: str) -> ProviderInfo:
        stake = Wei(10**9)
        return ProviderInfo(
            address=self.address,
            registered=True,
            group=0,
            stake=stake,
            locked=Wei(0),
            free=stake,
            earned=Wei(0),
            completed=0,
            slashed=0,
            unbonding=Wei(0),
            unbond_ready_at=0,
        )

    def token_balance(self, owner: str) -> Wei:
        return Wei(0)

    def register(self, group: int = 0) -> Receipt:
        raise AssertionError("the provider is registered already")

    def stake(self, amount: int) -> Receipt:
        raise AssertionError("the provider is staked already")


def provider_settings(work: Path, coordinator_addr: str) -> ProviderSettings:
    unused = "0x" + "11" * 20
    return ProviderSettings(
        rpc_url="http://127.0.0.1:9",
        market_address=unused,
        registry_address=unused,
        token_address=unused,
        keystore=work / "unused-keystore.json",
        ipfs_api="http://127.0.0.1:9",
        coordinator_multiaddr=coordinator_addr,
        work_dir=work,
        runtime="process",
        unsafe_process_runtime=True,
        stake=Decimal(0),
        cpu_only=True,
        advert_period_s=0.5,
        shutdown_grace_s=0,
    )


async def first_advert_from_provider(coordinator: Node) -> Advert:
    """The first provider advert the stand-in coordinator receives (waits ADVERT_WAIT_S)."""
    async with subscribe_adverts(coordinator, Verifier()) as adverts:
        with trio.fail_after(ADVERT_WAIT_S):
            async for delivery in adverts:
                body = delivery.value.body
                assert isinstance(body, Advert)
                if body.provider == PROVIDER.address:
                    return body
    raise AssertionError("the advert subscription ended")


async def run_coordinator(
    listen: list[str], stop: trio.Event, started: trio.MemorySendChannel[Node]
) -> None:
    """A stand-in coordinator host on ``listen``, sent to ``started``, until ``stop`` is set."""
    async with open_host(COORDINATOR.private_key, listen=listen) as coordinator:
        await started.send(coordinator)
        await stop.wait()
    # py-libp2p 0.8.1 leaves the TCP listener accepting after the host stops; a process
    # that exits closes it, so close it here the way a real restart would.
    for listener in list(coordinator.host.get_network().listeners.values()):
        await listener.close()


@pytest.mark.integration
async def test_provider_adverts_reach_a_restarted_coordinator(tmp_path: Path) -> None:
    port = free_port()
    listen = [f"/ip4/127.0.0.1/tcp/{port}"]
    settings = provider_settings(tmp_path, f"{listen[0]}/p2p/{COORDINATOR.peer_id}")
    provider_node = ProviderNode(
        settings,
        identity=PROVIDER,
        chain=StakedChain(),  # type: ignore[arg-type]
        chain_id=31337,
        store=MemoryContentStore(),
        runtime=create_runtime("process", unsafe=True),
        offer=CPU_OFFER,
    )
    started_send, started = trio.open_memory_channel[Node](1)
    async with trio.open_nursery() as nursery:
        stop_first = trio.Event()
        nursery.start_soon(run_coordinator, listen, stop_first, started_send)
        coordinator = await started.receive()
        async with provider_node as provider:
            assert provider.link is not None and provider.node is not None
            before = await first_advert_from_provider(coordinator)

            stop_first.set()
            with trio.fail_after(5):
                while provider.node.is_connected(COORDINATOR.peer_id):
                    await trio.sleep(0.05)
            await trio.sleep(1.0)  # a redial or two fail while nothing listens on the port

            stop_second = trio.Event()
            nursery.start_soon(run_coordinator, listen, stop_second, started_send)
            coordinator = await started.receive()
            after = await first_advert_from_provider(coordinator)
            assert after.seq > before.seq
            assert provider.link.reconnects >= 1
            assert COORDINATOR.peer_id in provider.node.connected_peers()
            stop_second.set()
    assert not settings.ready_file.exists()


@dataclass
class FlakyNode:
    """A node whose dials fail ``failures`` times (one of them with a foreign error)."""

    failures: int
    connected: bool = True
    foreign_error_at: int | None = 2
    dials: list[float] = field(default_factory=list)

    def is_connected(self, peer: PeerId) -> bool:
        return self.connected

    async def connect(self, addr: str) -> PeerId:
        self.dials.append(trio.current_time())
        if len(self.dials) <= self.failures:
            if len(self.dials) == self.foreign_error_at:
                raise OSError("a libp2p failure nobody translated")
            raise DialError(addr, "connection refused")
        self.connected = True
        return COORDINATOR.peer_id


ADDR = f"/ip4/127.0.0.1/tcp/4001/p2p/{COORDINATOR.peer_id}"


async def test_redials_back_off_up_to_the_cap_and_survive_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = FlakyNode(failures=8)
    link = CoordinatorLink(node, ADDR, first_delay_s=0.2, max_delay_s=5.0)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        await trio.sleep(1.0)
        lost_at = trio.current_time()
        node.connected = False
        with trio.fail_after(60):
            while link.reconnects < 1:
                await trio.sleep(0.1)
        assert len(node.dials) == 9 and node.connected
        gaps = [b - a for a, b in zip([lost_at, *node.dials], node.dials, strict=False)]
        assert max(gaps) <= 5.0 + link.check_interval_s
        assert gaps[-1] == pytest.approx(5.0)  # capped, not 0.2 * 2**8
        assert gaps[1:4] == pytest.approx([0.4, 0.8, 1.6])

        # Cancelling (the daemon's shutdown) ends the loop even while it is redialing.
        node.connected = False
        node.failures = 10**6
        await trio.sleep(30)
        dials = len(node.dials)
        nursery.cancel_scope.cancel()
    await trio.sleep(30)
    assert len(node.dials) == dials


async def test_a_connection_that_drops_at_once_keeps_the_backoff_growing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = FlakyNode(failures=0)
    link = CoordinatorLink(node, ADDR, first_delay_s=0.2, max_delay_s=5.0)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        for _ in range(6):
            node.connected = False
            reconnects = link.reconnects
            while link.reconnects == reconnects:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in zip(node.dials, node.dials[1:], strict=False)]
    assert gaps == sorted(gaps) and gaps[-1] >= 3.2


async def test_first_dial_gives_up_after_its_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = FlakyNode(failures=100, connected=False, foreign_error_at=None)
    link = CoordinatorLink(node, ADDR)  # type: ignore[arg-type]
    with pytest.raises(DialError):
        await link.connect(attempts=3)
    assert len(node.dials) == 3


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def test_coordinator_address_must_name_its_peer() -> None:
    assert coordinator_peer(ADDR) == COORDINATOR.peer_id
    with pytest.raises(ConfigError, match="PROVIDER_COORDINATOR_MULTIADDR"):
        coordinator_peer("/ip4/127.0.0.1/tcp/4001")
