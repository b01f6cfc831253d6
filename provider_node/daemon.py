"""The provider daemon: ``async with ProviderNode(settings) as node: await node.serve()``.

Entering: unlock the keystore, benchmark (or read the cache), make sure the account is
registered and staked, start the GPU health checks (:mod:`provider_node.gpuhealth`), start
the libp2p host, serve ``JOB_PROTOCOL`` (offers answered
within the consent policy, :mod:`provider_node.policy`) and ``CHALLENGE_PROTOCOL``, dial
the coordinator (and keep redialing it whenever the connection drops, e.g. across a
coordinator restart), start advertising and the chain fallback (on-chain commits and
reveals when the coordinator does not answer), resume jobs left by a previous run, then
write ``<work_dir>/provider.json`` (atomically) to say it is ready. Leaving (SIGTERM/SIGINT
end :meth:`ProviderNode.serve`): stop advertising, redialing and the fallback, let running
jobs finish within the grace period and hand back the rest, then close everything.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType

import trio

from contracts.chain import Web3Chain
from contracts.deploy import connect
from contracts.models import Deployment
from protocol import eip712
from protocol.errors import ConfigError
from protocol.files import write_atomic
from protocol.identity import Identity, load_keystore
from protocol.ids import PeerId
from protocol.ipfs.kubo import KuboContentStore
from protocol.ipfs.retention import PinRetention
from protocol.ipfs.store import ContentStore
from protocol.messages.advert import RuntimeKind
from protocol.p2p.addresses import announced, unspecified
from protocol.p2p.host import Node, open_host
from protocol.p2p.rpc_server import RequestHandlers
from protocol.p2p.rpc_wire import Limits
from protocol.registry import CHALLENGE_PROTOCOL, JOB_PROTOCOL, MAX_MESSAGE_BYTES
from provider_node.advertiser import (
    Advertiser,
    Capacity,
    installed_packages,
    python_packages,
)
from provider_node.challenges import ChallengeServer, device_hold
from provider_node.coordinator_link import CoordinatorLink
from provider_node.fallback import ChainFallback, wall_chain_time
from provider_node.gpuhealth import GpuHealth, Probe, default_probe, nvml_utilization
from provider_node.gpus import GpuPool
from provider_node.inputcache import InputCache
from provider_node.jobstore import JobStore, SequenceFile
from provider_node.metrics import NodeFigures, ProviderMetrics, serve_metrics
from provider_node.offers import OfferDesk
from provider_node.policy import consent_policy
from provider_node.profile import HostOffer, measure_offer
from provider_node.reporter import P2PReporter
from provider_node.runtimes import CONTAINER_RUNTIMES, BwrapRuntime, Runtime, create_runtime
from provider_node.runtimes.warm import SlotHold
from provider_node.runtimes.warmpool import PoolConfig, WarmPool
from provider_node.server import JobServer
from provider_node.settings import ProviderSettings
from provider_node.staking import ProviderChain, ensure_staked, fallback_gas_warning
from provider_node.worker import JobWorker, WorkerConfig

log = logging.getLogger(__name__)

JOB_LIMITS = Limits(max_request_bytes=MAX_MESSAGE_BYTES, timeout_s=120.0)
"""Reveal requests add the outputs to IPFS before answering, which can take a while."""
CHALLENGE_LIMITS = Limits(max_request_bytes=64 * 1024, timeout_s=300.0)


def make_runtime(settings: ProviderSettings) -> Runtime:
    """The configured sandbox runtime, refused when it cannot run here."""
    if settings.runtime == "process":
        if not settings.unsafe_process_runtime:
            raise ConfigError(
                "PROVIDER_RUNTIME=process has no isolation; "
                "start with --unsafe-process-runtime to use it anyway"
            )
        runtime = create_runtime("process", unsafe=True)
    elif settings.runtime in CONTAINER_RUNTIMES:
        runtime = create_runtime(
            settings.runtime,
            torch_image=settings.container_torch_image,
            oci_runtime=settings.container_oci_runtime,
        )
    else:
        runtime = create_runtime(settings.runtime)
    reason = runtime.unavailable_reason()
    if reason is not None:
        raise ConfigError(f"PROVIDER_RUNTIME={settings.runtime} cannot run here: {reason}")
    return runtime


HOST_PYTHON_RUNTIMES = ("bwrap", "process")
"""Runtimes whose torch jobs run on this daemon's interpreter (so import its packages)."""


def warm_pool(settings: ProviderSettings, runtime: Runtime, gpus: GpuPool) -> WarmPool | None:
    """The warm sandbox pool the settings ask for (bwrap only); None: every job starts cold."""
    if settings.warm_sandboxes == 0 or not isinstance(runtime, BwrapRuntime):
        return None
    config = PoolConfig(
        size=settings.warm_sandboxes,
        gpus_per_slot=min(settings.warm_sandbox_gpus, gpus.total),
        hold=SlotHold(
            memory_bytes=min(settings.warm_sandbox_memory_bytes, settings.max_job_memory_bytes),
            max_pids=min(256, settings.max_job_pids),
        ),
    )
    return WarmPool(
        runtime,
        settings.work_dir / "warm",
        config,
        devices=gpus.devices,
        free_gpus=lambda: gpus.free_devices,
    )


def runtimes_offered(runtime: Runtime) -> tuple[RuntimeKind, ...]:
    return ("torch", "container") if runtime.name in CONTAINER_RUNTIMES else ("torch",)


def connect_chain(settings: ProviderSettings, identity: Identity) -> Web3Chain:
    """A chain client acting for the provider's account (blocking: it asks the node)."""
    w3 = connect(settings.rpc_url, settings.chain_id, network=settings.network)
    deployment = Deployment(
        chain_id=int(w3.eth.chain_id),
        token=settings.token,
        registry=settings.registry,
        market=settings.market,
    )
    return Web3Chain(
        settings.rpc_url,
        deployment,
        "0x" + identity.private_key.hex(),
        w3=w3,
        policy=settings.send_policy(),
        journal_dir=settings.journal_dir,
    )


class ProviderNode:
    """A running provider; see the module docstring. Parts can be injected for tests."""

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        identity: Identity | None = None,
        chain: ProviderChain | None = None,
        chain_id: int | None = None,
        chain_time: Callable[[], int] | None = None,
        store: ContentStore | None = None,
        runtime: Runtime | None = None,
        offer: HostOffer | None = None,
        gpu_probe: Probe | None = None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.chain = chain
        self.chain_id = chain_id
        self.chain_time = chain_time
        self._injected_time = chain_time
        """Block time for deadlines; default: the chain's, never behind this host's clock
        for a chain the daemon connects itself (an injected chain's own time otherwise)."""
        self.store = store
        self.runtime = runtime
        self.offer = offer
        self.metrics = ProviderMetrics(figures=self.figures)
        self.metrics_url: str | None = None
        self._stack = AsyncExitStack()
        self._background = trio.CancelScope()
        """Advertising and the coordinator link (the scope of their nursery once started):
        cancelled first when the node stops."""
        self.node: Node | None = None
        self.link: CoordinatorLink | None = None
        self.server: JobServer | None = None
        self.advertiser: Advertiser | None = None
        self.fallback: ChainFallback | None = None
        self.retention: PinRetention | None = None
        self.gpus = GpuPool(())
        self.warm: WarmPool | None = None
        """The warm sandbox pool jobs run through (None: every job starts cold)."""
        self.gpu_probe = gpu_probe
        self.health: GpuHealth | None = None
        """Periodic GPU health checks (None on a host without GPUs or with them off)."""

    @property
    def address(self) -> str:
        assert self.identity is not None
        return self.identity.address

    @property
    def peer_id(self) -> PeerId:
        assert self.identity is not None
        return self.identity.peer_id

    async def __aenter__(self) -> ProviderNode:
        try:
            await self._start()
        except BaseException:
            self._background.cancel()
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        s = self.settings
        s.work_dir.mkdir(parents=True, exist_ok=True)
        s.ready_file.unlink(missing_ok=True)
        if self.identity is None:
            password = s.keystore_password()
            self.identity = await trio.to_thread.run_sync(load_keystore, s.keystore, password)
        identity = self.identity
        runtime = self.runtime = self.runtime or make_runtime(s)
        policy = consent_policy(s)
        if not policy.coordinators:
            log.warning("no coordinator allow-listed: every offer will be declined")
        if self.chain is None:
            web3_chain = await trio.to_thread.run_sync(connect_chain, s, identity)
            self.chain, self.chain_id = web3_chain, web3_chain.deployment.chain_id
            self.chain_time = self.chain_time or wall_chain_time(web3_chain)
        chain = self.chain
        chain_time = self.chain_time or (lambda: chain.now())
        if self.chain_id is None:
            raise ConfigError("the chain id is unknown; pass chain_id with an injected chain")
        report = await trio.to_thread.run_sync(ensure_staked, chain, s.stake_wei)
        log.info("provider %s: stake %s, registered", identity.address, report.info.stake)
        warning = await trio.to_thread.run_sync(fallback_gas_warning, chain, s.max_concurrent_jobs)
        if warning is not None:
            log.warning("%s", warning)
        if self.offer is None:
            self.offer = await trio.to_thread.run_sync(
                lambda: measure_offer(s.work_dir / "benchmark", cpu_only=s.cpu_only)
            )
        offer = self.offer
        self.gpus = GpuPool(offer.gpu_indices)
        if self.gpus.devices and s.gpu_check_period_s > 0:
            probe = self.gpu_probe or default_probe(self.metrics.nvml)
            self.health = GpuHealth(self.gpus, probe, period_s=s.gpu_check_period_s)
        pool = self.warm = warm_pool(s, runtime, self.gpus)
        if pool is not None:
            # Jobs run through the pool; its slots are killed after running jobs finish.
            runtime = await self._stack.enter_async_context(pool)
            self.gpus.prefer = pool.ready_gpu_sets
        if self.store is None:
            self.store = await self._stack.enter_async_context(
                KuboContentStore(s.ipfs_api, peers=s.ipfs_peers, gateways=s.ipfs_gateways)
            )
        jobs = JobStore(s.work_dir)
        domain = eip712.Eip712Domain(chain_id=self.chain_id, verifying_contract=s.market)
        # Torch jobs of the host runtimes import this daemon's own environment.
        installed = installed_packages() if runtime.name in HOST_PYTHON_RUNTIMES else None
        config = WorkerConfig(
            max_input_bytes=s.max_input_bytes,
            max_input_entries=s.max_input_entries,
            memory_bytes=s.max_job_memory_bytes,
            max_pids=s.max_job_pids,
            max_timeout_s=s.max_job_timeout_s,
            packages=installed,
        )
        cache = (
            InputCache(s.work_dir / "input-cache", s.input_cache_bytes)
            if s.input_cache_bytes > 0
            else None
        )
        worker = JobWorker(
            identity,
            self.store,
            runtime,
            jobs,
            domain,
            self.gpus,
            config,
            metrics=self.metrics,
            input_cache=cache,
        )
        worker.retention = self.retention = PinRetention(
            self.store, s.work_dir / "output-pins.json", s.output_retention_s
        )

        fallback = self.fallback = ChainFallback(chain, jobs, now=chain_time)
        # Consent expiries are judged by block time, as the contract's assign will judge them
        # (the wall clock can run ahead of a devnet's chain after a snapshot revert); an
        # injected clock (tests) stands in for both.
        offers_now = self._injected_time or (lambda: chain.now())
        offers = OfferDesk(identity, chain, domain, policy, now=offers_now)

        node = self.node = await self._stack.enter_async_context(
            open_host(identity.private_key, listen=[s.listen_multiaddr])
        )
        server = self.server = await self._stack.enter_async_context(
            JobServer(
                identity,
                chain,
                worker,
                jobs,
                lambda peer: P2PReporter(node, identity, peer),
                max_concurrent=s.max_concurrent_jobs,
                max_queued=s.max_queued_jobs,
                offers=offers,
                fallback=fallback,
            )
        )
        hold = device_hold(
            self.gpus,
            cpu_device=offer.device,
            pause=None if pool is None else pool.paused,
        )
        challenges = ChallengeServer(identity, hold=hold, claims=offer.benchmark.tflops)
        handlers = RequestHandlers(node)
        handlers.register(JOB_PROTOCOL, server.handle, JOB_LIMITS)
        handlers.register(CHALLENGE_PROTOCOL, challenges.handle, CHALLENGE_LIMITS)

        if s.coordinator_multiaddr:
            self.link = CoordinatorLink(node, s.coordinator_multiaddr)
            await self.link.connect()
        self.advertiser = Advertiser(
            node,
            identity,
            offer,
            price_per_gpu_hour=s.price_wei,
            price_per_cpu_hour=s.cpu_price_wei,
            runtimes=runtimes_offered(runtime),
            packages={} if installed is None else python_packages(installed),
            capacity=self._capacity,
            usable_gpus=lambda: self.gpus.healthy_devices,
            sequence=SequenceFile(s.work_dir / "advert_seq.json"),
            period_s=s.advert_period_s,
            ttl_s=s.advert_ttl_s,
            announce=announced(s.announce, identity.peer_id),
            max_input_bytes=s.max_input_bytes,
        )
        if not s.announce and any(unspecified(a) for a in node.addrs):
            log.warning(
                "listening on every interface without PROVIDER_ANNOUNCE: adverts carry %s, "
                "which no coordinator can dial; set PROVIDER_ANNOUNCE to the address others "
                "reach this host at",
                ", ".join(node.addrs),
            )
        nursery = await self._stack.enter_async_context(trio.open_nursery())
        self._background = nursery.cancel_scope
        nursery.start_soon(self.advertiser.run, name="advertiser")
        nursery.start_soon(fallback.run, name="chain fallback")
        if self.health is not None:
            nursery.start_soon(self.health.run, name="gpu health")
        nursery.start_soon(self.retention.run, name="output retention")
        if self.link is not None:
            nursery.start_soon(self.link.run, name="coordinator link")
        await server.resume()
        if s.metrics_port is not None:
            endpoint = serve_metrics(self.metrics, s.metrics_port, s.metrics_host)
            self._stack.callback(endpoint.close)
            self.metrics_url = endpoint.url
        self._stack.callback(s.ready_file.unlink, missing_ok=True)
        ready = {
            "address": identity.address,
            "peer_id": identity.peer_id,
            "multiaddrs": node.addrs,
            "metrics_url": self.metrics_url,
        }
        write_atomic(s.ready_file, json.dumps(ready, indent=2).encode())
        log.info("provider %s ready on %s", identity.address, ", ".join(node.addrs))

    def _capacity(self) -> Capacity:
        server = self.server
        running = server.active if server is not None else 0
        slots_left = self.settings.max_concurrent_jobs - running
        taking = server is not None and server.accepting and slots_left > 0
        return Capacity(
            free_gpus=self.gpus.free if taking else 0,
            utilization=running / self.settings.max_concurrent_jobs,
            gpu_utilization=nvml_utilization(self.metrics.nvml, self.gpus.healthy_devices),
            max_queued=self.settings.max_queued_jobs,
        )

    def figures(self) -> NodeFigures:
        server = self.server
        return NodeFigures(
            running_jobs=server.active if server else 0,
            max_jobs=self.settings.max_concurrent_jobs,
            free_gpus=self.gpus.free,
            total_gpus=self.gpus.total,
            adverts_published=self.advertiser.published if self.advertiser else 0,
            finished_jobs=dict(server.completed) if server else {},
            warm_ready=len(self.warm.ready_gpu_sets()) if self.warm else 0,
            sandbox_starts=self.warm.figures.starts() if self.warm else {},
            gpu_devices=self.gpus.devices,
            gpu_failures=dict(self.health.failures) if self.health else {},
        )

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT arrives."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                return

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._background.cancel()
        try:
            if self.server is not None:
                with trio.CancelScope(shield=True):
                    await self.server.drain(self.settings.shutdown_grace_s)
        finally:
            await self._stack.aclose()


async def run_provider(settings: ProviderSettings) -> None:
    """Start a provider and serve until SIGTERM/SIGINT (what ``provider run`` calls)."""
    async with ProviderNode(settings) as node:
        await node.serve()
