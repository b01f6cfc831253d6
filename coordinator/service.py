"""The coordinator as one long-lived component: ``async with Coordinator(settings) as c``.

It opens the store (running migrations), the chain client, the content store, the libp2p
host (adverts on gossipsub, reports on ``REPORT_PROTOCOL``) and the HTTP API (hypercorn
in the same trio run), then resumes every open job from the store and follows the chain.
Leaving the block stops everything; nothing the coordinator knows lives only in memory.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import trio

from contracts.chain import Web3Chain
from contracts.client import ChainClient
from contracts.deploy import connect
from contracts.errors import JobNotFound
from contracts.models import Deployment
from coordinator.api import create_app
from coordinator.chain.chain_io import AsyncChain
from coordinator.chain.settlement import Settler
from coordinator.chain.watcher import CURSOR, ChainWatcher
from coordinator.errors import NotOurJob, Unavailable, UnknownJob
from coordinator.history import HistoryConfig, HistoryRecorder
from coordinator.lifecycle.assigning import Assigner
from coordinator.lifecycle.driver import DriverConfig, JobDriver
from coordinator.lifecycle.offers import Offerer
from coordinator.lifecycle.runner import JobRunner
from coordinator.matching.admission import Admission
from coordinator.matching.book import ProviderBook
from coordinator.matching.matcher import Matcher
from coordinator.metrics import Metrics
from coordinator.settings import CoordinatorSettings
from coordinator.signals import Signals
from coordinator.store import AsyncStore, JobRecord, Store
from coordinator.tasks import contained
from coordinator.verification.challenger import Challenger
from coordinator.verification.reputation import ReputationBook
from coordinator.verification.reputation_seed import TrustedHistory
from coordinator.wire.dispatcher import Dispatcher
from coordinator.wire.reachability import Reachability
from coordinator.wire.reports import ReportHandler
from coordinator.wire.transport import Libp2pTransport, PeerTransport
from protocol.errors import ContentError
from protocol.files import write_atomic
from protocol.ids import JobId, parse_address
from protocol.ipfs.kubo import KuboContentStore
from protocol.ipfs.peers import MAX_PEERS
from protocol.ipfs.retention import PinRetention, pin_verified
from protocol.ipfs.store import ContentStore
from protocol.messages import Advert
from protocol.p2p.addresses import announced
from protocol.p2p.adverts import subscribe_adverts
from protocol.p2p.asgi import serve_asgi
from protocol.p2p.host import Node, open_host
from protocol.p2p.rpc_server import RequestHandlers
from protocol.p2p.rpc_wire import Limits
from protocol.registry import CHALLENGE_PROTOCOL, MAX_MESSAGE_BYTES, REPORT_PROTOCOL

log = logging.getLogger(__name__)

NOTICE_WAIT_S = 2.0
STAKE_BATCH = 50
RESULT_SWEEP_S = 60.0
"""How often expired result pins are released and failed result pins retried."""
REACHABILITY_PERIOD_S = 2.0
"""How often the book is looked over for providers whose addresses are due a probe."""
REPORT_LIMITS = Limits(
    max_request_bytes=MAX_MESSAGE_BYTES, max_response_bytes=64 * 1024, timeout_s=10.0
)


class Coordinator:
    """A running coordinator; see the module docstring."""

    def __init__(
        self,
        settings: CoordinatorSettings,
        *,
        chain_client: ChainClient | None = None,
        content: ContentStore | None = None,
        transport: PeerTransport | None = None,
    ) -> None:
        self.settings = settings
        self._chain_client = chain_client
        self._content = content
        self._transport = transport
        self._stack = AsyncExitStack()
        self.metrics = Metrics()
        self.signals = Signals()
        self.book = ProviderBook(
            time.time,
            ttl_s=settings.provider_ttl_s,
            stake_refresh_s=settings.stake_refresh_s,
            max_providers=settings.max_providers,
        )
        self.reputation = ReputationBook(time.time)
        self.http_url = ""
        self.node: Node | None = None
        self.results: PinRetention | None = None
        """Settled jobs' results pinned on this coordinator's IPFS node for a while."""

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Coordinator:
        await self._stack.__aenter__()
        try:
            await self._start()
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.nursery.cancel_scope.cancel()
        return await self._stack.__aexit__(exc_type, exc, tb)

    async def _start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.identity = await trio.to_thread.run_sync(s.identity)
        sync_store = await trio.to_thread.run_sync(Store, s.database_url)
        self._stack.callback(sync_store.close)
        self.store = AsyncStore(sync_store)
        client = self._chain_client
        if client is None:
            client = await trio.to_thread.run_sync(self._web3_chain)
        self.chain = AsyncChain(client)
        # The market's own parameters (set at deploy), never a second copy in settings.
        params = await trio.to_thread.run_sync(client.market_params)
        self.admission = Admission(
            self.chain,
            params.min_stake,
            lookup_interval_s=s.admission_lookup_s,
            max_queued=s.admission_queue,
            lookups_per_s=s.admission_lookups_per_s,
        )
        self.chain_id = client.deployment.chain_id
        self.domain = client.deployment.domain
        if self._content is None:
            self._content = await self._stack.enter_async_context(
                KuboContentStore(s.ipfs_api, peers=s.ipfs_peers, gateways=s.ipfs_gateways)
            )
        self.content: ContentStore = self._content
        self.reputation.load(await self.store.reputation_records())

        self.node = await self._stack.enter_async_context(
            open_host(self.identity.private_key, listen=[s.listen_multiaddr])
        )
        self.nursery = await self._stack.enter_async_context(trio.open_nursery())
        transport = self._transport or Libp2pTransport(self.node)
        self.matcher = Matcher(
            self.book.columns,
            stake_factor=params.stake_factor,
            exploration_share=s.exploration_share,
        )
        self.dispatcher = Dispatcher(self.identity, transport, timeout_s=s.request_timeout_s)
        self.watcher: ChainWatcher
        self.offerer = Offerer(
            self.identity,
            self.store,
            self.chain,
            self.book,
            self.dispatcher,
            self.signals,
            self.domain,
            chain_now=lambda: self.watcher.now(),
        )
        self.assigner = Assigner(
            self.store,
            self.chain,
            self.book,
            self.matcher,
            self.offerer,
            self.metrics.match_latency.observe,
        )
        self.settler = Settler(self.chain, s.settle_window_s)
        self.driver = JobDriver(
            identity=self.identity,
            store=self.store,
            chain=self.chain,
            content=self.content,
            book=self.book,
            assigner=self.assigner,
            dispatcher=self.dispatcher,
            settler=self.settler,
            reputation=self.reputation,
            signals=self.signals,
            domain=self.domain,
            chain_now=lambda: self.watcher.now(),
            config=DriverConfig(
                request_timeout_s=s.request_timeout_s,
                reveal_timeout_s=s.reveal_timeout_s,
                stake_factor=params.stake_factor,
            ),
        )
        self.history = HistoryRecorder(
            self.store,
            self.book,
            time.time,
            metrics=self.metrics.history,
            config=HistoryConfig(sample_s=s.history_sample_s, flush_s=s.history_flush_s),
            content=self.content,
        )
        self.driver.history = self.history
        if s.result_retention_s > 0:
            content = self.content
            scratch = s.data_dir / "result-fetch"

            async def fetch(cid: str) -> None:
                await pin_verified(content, cid, scratch, s.result_max_bytes)

            self.driver.results = self.results = PinRetention(
                content, s.data_dir / "result-pins.json", s.result_retention_s, fetch=fetch
            )
        self.runner = JobRunner(
            self.driver, self.signals, self.nursery, poll_s=max(0.2, s.poll_interval_s * 2)
        )
        self.watcher = ChainWatcher(
            self.chain,
            self.store,
            self.signals,
            self.runner.wake,
            reorg_margin=s.reorg_margin,
            start_block=s.start_block,
            poll_s=s.poll_interval_s,
        )
        reports = ReportHandler(
            self.identity,
            self.store,
            self.signals,
            self.domain,
            self._reveal_reported,
            chain_now=lambda: self.watcher.now(),
        )
        handlers = RequestHandlers(self.node)
        handlers.register(REPORT_PROTOCOL, reports.handle, REPORT_LIMITS)
        self.challenger = Challenger(
            self.identity,
            transport,
            self.book,
            n=s.challenge_n,
            target_s=s.challenge_target_s,
            max_queued=s.challenge_queue,
            interval_s=s.challenge_interval_s,
        )

        self.assigner.wake = self.runner.wake
        self.assigner.chain_now = lambda: self.watcher.now()
        self.watcher.observers.append(self.admission.observe)
        history = await self._trusted_history()
        await self.watcher.poll_once()
        history.stop_counting_own()  # the store caught up: own jobs count from its rows
        for job_id in await self.store.unrecorded_jobs():
            self.runner.wake(job_id)  # ended before a crash: count its seats' outcomes
        for job in await self.store.open_jobs():
            # Job slots this coordinator holds at providers survive a restart.
            self.book.capacity.sync(job.job_id, await self.store.slots(job.job_id))
            self.runner.wake(job.job_id)
        self.nursery.start_soon(self.watcher.run, name="chain watcher")
        self.nursery.start_soon(self.admission.run, name="advertiser admission")
        self.nursery.start_soon(self.settler.run, name="settlement batcher")
        self.nursery.start_soon(self._adverts, name="advert subscription")
        self.nursery.start_soon(self._maintain_book, name="book maintenance")
        self.nursery.start_soon(self._probe_providers, name="provider reachability")
        self.nursery.start_soon(self.history.run, name="history recorder")
        if self.results is not None:
            self.nursery.start_soon(self._keep_results, self.results, name="result retention")
        if s.challenges:
            self.nursery.start_soon(self.challenger.run, name="benchmark challenger")
            self.nursery.start_soon(self.challenger.schedule, name="challenge schedule")
        server = await self._stack.enter_async_context(
            serve_asgi(
                create_app(
                    self,
                    stake_factor=self.matcher.stake_factor,
                    ipfs_peers=await self._ipfs_peers() if self.results is not None else (),
                    result_retention_s=s.result_retention_s,
                ),
                host=s.http_host,
                port=s.http_port,
            )
        )
        self.http_url = server.url
        log.info(
            "coordinator %s ready: %s (dashboard %s/dashboard), %s",
            self.identity.address,
            self.http_url,
            self.http_url,
            self.multiaddr,
        )

    async def _ipfs_peers(self) -> tuple[str, ...]:
        """Where requesters' nodes dial this coordinator's node: the announced addresses,
        else those the node reports (none when it does not answer now)."""
        s = self.settings
        if s.ipfs_announce:
            return s.ipfs_announce
        try:
            async with KuboContentStore(s.ipfs_api, timeout=5.0) as node:
                reported = (await node.node_id()).get("Addresses")
        except ContentError as exc:
            log.warning("IPFS node %s did not say its addresses: %s", s.ipfs_api, exc)
            return ()
        if not isinstance(reported, list):
            return ()
        return tuple(str(a) for a in reported if isinstance(a, str) and "/p2p/" in a)[:MAX_PEERS]

    async def _probe_providers(self) -> None:
        """Probe providers' advertised addresses; an unreachable one is logged and marked."""
        reachability = Reachability(self.book)
        while True:
            with contained(log, "probing providers' addresses"):
                await reachability.check_once()
            await trio.sleep(REACHABILITY_PERIOD_S)

    async def _keep_results(self, results: PinRetention) -> None:
        """Pin settled jobs' results on this coordinator's node, release expired ones."""
        while True:
            with contained(log, "result retention"):
                await results.run(RESULT_SWEEP_S)
            await trio.sleep(RESULT_SWEEP_S)

    async def _trusted_history(self) -> TrustedHistory:
        """Trusted settlements, where providers without a stored reputation start: replayed
        up to the watcher's cursor, then followed with it. On an empty store (no cursor)
        this coordinator's own settlements count too (see
        coordinator.verification.reputation_seed)."""
        s = self.settings
        cursor = await self.store.cursor(CURSOR)
        history = TrustedHistory(self.address, s.trusted_coordinators, count_own=cursor is None)
        if cursor is not None:
            read = await history.replay(self.chain, s.start_block, cursor)
            log.info("reputation seeds: %d events replayed up to block %d", read, cursor)
        self.reputation.history = history
        self.watcher.observers.append(history.observe)
        return history

    def _web3_chain(self) -> ChainClient:
        s = self.settings
        w3 = connect(s.rpc_url, s.chain_id, network=s.network)
        deployment = Deployment(
            chain_id=int(w3.eth.chain_id), token=s.token, registry=s.registry, market=s.market
        )
        return Web3Chain(
            s.rpc_url,
            deployment,
            "0x" + self.identity.private_key.hex(),
            w3=w3,
            policy=s.send_policy(),
            journal_dir=s.journal_dir,
        )

    # ------------------------------------------------------------------ facts
    @property
    def address(self) -> str:
        return self.identity.address

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    @property
    def multiaddr(self) -> str:
        """What providers dial: the first announce address, else the first listen one."""
        assert self.node is not None
        if self.settings.announce:
            return announced(self.settings.announce, self.identity.peer_id)[0]
        return self.node.addrs[0]

    def chain_block(self) -> int:
        return self.watcher.head

    def settle_batches(self) -> int:
        return self.settler.batches_sent

    def ready_info(self) -> dict[str, Any]:
        return {
            "http_url": self.http_url,
            "multiaddr": self.multiaddr,
            "address": self.address,
            "peer_id": self.peer_id,
        }

    def write_ready_file(self, path: Path | None = None) -> Path:
        """Write ``coordinator.json`` atomically (write, fsync, rename)."""
        target = path or self.settings.ready_file
        write_atomic(target, json.dumps(self.ready_info()).encode())
        return target

    # ------------------------------------------------------------------ API backend
    async def notice(self, job_id: str) -> JobRecord:
        """Fast path of ``POST /jobs``: make sure an on-chain job of ours is known."""
        job = await self.store.find_job(job_id)
        if job is None:
            try:
                info = await self.chain.get_job(JobId(bytes.fromhex(job_id[2:])))
            except JobNotFound as exc:
                raise UnknownJob(job_id) from exc
            if info.coordinator != self.address:
                raise NotOurJob(job_id, info.coordinator)
            self.watcher.poke()
            with trio.move_on_after(NOTICE_WAIT_S):
                while job is None:
                    await trio.sleep(0.05)
                    job = await self.store.find_job(job_id)
            if job is None:
                job = await self.watcher.find_created(job_id)
            if job is None:
                raise Unavailable("chain", f"the JobCreated event of {job_id} is not visible yet")
        self.runner.wake(job.job_id)
        return job

    # ------------------------------------------------------------------ background
    async def _reveal_reported(self, job: JobRecord, slot: Any, reveal: Any) -> bool:
        return await self.driver.accept_reveal(job, slot, reveal)

    async def _adverts(self) -> None:
        assert self.node is not None
        # Strangers (not registered and staked on chain) are dropped inside GossipSub,
        # before any signature check, book write, reputation row, relay or dial.
        async with subscribe_adverts(
            self.node, self.book.verifier, admit=self.admission.admits
        ) as adverts:
            async for delivery in adverts:
                with contained(log, "advert not taken into the book"):
                    advert = delivery.value.body
                    if isinstance(advert, Advert):
                        new = self.book.find(advert.provider) is None
                        if self.book.accept(advert):
                            self.challenger.observe(advert, new)

    async def _maintain_book(self) -> None:
        while True:
            with contained(log, "expiring silent providers"):
                self.book.expire()
            for address in self.book.stake_due()[:STAKE_BATCH]:
                with contained(log, f"cannot refresh provider {address} from the chain"):
                    await self._refresh_provider(address)
            await trio.sleep(min(1.0, self.settings.poll_interval_s))

    async def _refresh_provider(self, address: str) -> None:
        info = await self.chain.provider_info(address)
        self.admission.set_stake(parse_address(address), info.registered, int(info.stake))
        self.book.set_chain_facts(
            address, registered=info.registered, free_stake=int(info.free), group=info.group
        )
        # Seeded (first seen) from trusted settlements, never the registry's counters.
        await self.reputation.ensure(self.store, self.book, address)


__all__ = ["CHALLENGE_PROTOCOL", "Coordinator"]
