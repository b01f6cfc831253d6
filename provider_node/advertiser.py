"""Publishing this provider's signed adverts on ``ADVERT_TOPIC``, paced, every few seconds.

Each advert carries the current free capacity and a sequence number that rises across
restarts (:class:`provider_node.jobstore.SequenceFile`), and expires a few periods after it
is sent, so a provider that falls silent drops out of every coordinator's book.
"""

from __future__ import annotations

import logging
import platform
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata

import trio

from protocol.clock import SYSTEM_CLOCK, Clock
from protocol.errors import GpuMarketError
from protocol.identity import Identity
from protocol.ids import Wei
from protocol.messages import Advert
from protocol.messages.advert import MAX_INPUT_LIMIT, GpuInfo, RuntimeKind
from protocol.p2p.gossip import PacedPublisher
from protocol.p2p.host import Node
from protocol.packages import MAX_OFFERED, NAME_PATTERN, normal_name
from protocol.registry import ADVERT_TOPIC, MAX_ADVERT_BYTES, MAX_MULTIADDRS
from protocol.signing import encode_signed, sign_message
from provider_node.jobstore import SequenceFile
from provider_node.profile import HostOffer

log = logging.getLogger(__name__)


def software_versions() -> dict[str, str]:
    try:
        version = metadata.version("gpumarket")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return {"gpumarket": version[:64], "python": platform.python_version()}


PACKAGES_BUDGET_BYTES = 6 * 1024
"""Most of an advert the package list may take (adverts are at most MAX_ADVERT_BYTES)."""


def installed_packages() -> dict[str, str]:
    """The distributions a torch job can import, name (PEP 503 form) to version: torch
    jobs of the host runtimes run on this daemon's own interpreter, so its environment is
    theirs."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name, version = dist.metadata["Name"], dist.version
        if name and version and re.match(NAME_PATTERN, name) and len(version) <= 64:
            found.setdefault(normal_name(name), version)
    return found


def python_packages(
    found: Mapping[str, str], budget_bytes: int = PACKAGES_BUDGET_BYTES
) -> dict[str, str]:
    """``found`` (:func:`installed_packages`) as adverts carry it: sorted by name, cut to
    :data:`~protocol.packages.MAX_OFFERED` entries and ``budget_bytes`` of JSON (a cut is
    logged: jobs needing the left-out packages are simply not matched here)."""
    kept: dict[str, str] = {}
    size = 2
    for name in sorted(found):
        size += len(name) + len(found[name]) + 6
        if len(kept) == MAX_OFFERED or size > budget_bytes:
            log.warning("advertising %d of %d Python packages", len(kept), len(found))
            break
        kept[name] = found[name]
    return kept


@dataclass(frozen=True)
class Capacity:
    """Free GPUs and load at the moment an advert is built."""

    free_gpus: int
    utilization: float
    """Job-slot occupancy: running jobs / concurrent job slots."""
    gpu_utilization: float | None = None
    """The GPUs' mean busy fraction read from NVML (None where NVML is unavailable)."""
    max_queued: int | None = None
    """Jobs it accepts beyond its running ones, to wait for a slot (None: not announced)."""


class NothingToOffer(GpuMarketError):
    """No GPU of a GPU provider is healthy: it stays silent, and drops out of the books."""


class Advertiser:
    """Builds, signs and publishes adverts until cancelled."""

    def __init__(
        self,
        node: Node,
        identity: Identity,
        offer: HostOffer,
        *,
        price_per_gpu_hour: Wei,
        price_per_cpu_hour: Wei,
        runtimes: Sequence[RuntimeKind],
        packages: Mapping[str, str] | None = None,
        capacity: Callable[[], Capacity],
        usable_gpus: Callable[[], Sequence[int]] | None = None,
        sequence: SequenceFile,
        period_s: float = 5.0,
        ttl_s: int = 20,
        clock: Clock = SYSTEM_CLOCK,
        announce: Sequence[str] = (),
        max_input_bytes: int | None = None,
    ) -> None:
        self.node = node
        self.max_input_bytes = (
            None if max_input_bytes is None else min(max_input_bytes, MAX_INPUT_LIMIT)
        )
        """The most input bytes it fetches for one job (``PROVIDER_MAX_INPUT_BYTES``), stated
        in adverts so coordinators do not offer it jobs it would refuse; None: not stated."""
        self.announce = tuple(announce)
        """Multiaddrs (with ``/p2p/``) adverts carry instead of the host's listen addresses."""
        self.identity = identity
        self.offer = offer
        self.price = price_per_gpu_hour
        self.cpu_price = price_per_cpu_hour
        self.runtimes = tuple(runtimes)
        self.packages = dict(packages or {})
        self.capacity = capacity
        self.usable_gpus = usable_gpus
        """The GPU indices (of ``offer.gpu_indices``) healthy enough to offer; None: all."""
        self.sequence = sequence
        self.period_s = period_s
        self.ttl_s = ttl_s
        self.clock = clock
        self.publisher = PacedPublisher(node, ADVERT_TOPIC)
        self.published = 0
        self.software = software_versions()

    def offered_gpus(self) -> tuple[GpuInfo, ...]:
        """The offer's GPUs less those the health checks took out."""
        if self.usable_gpus is None:
            return self.offer.gpus
        usable = set(self.usable_gpus())
        return tuple(
            gpu
            for index, gpu in zip(self.offer.gpu_indices, self.offer.gpus, strict=False)
            if index in usable
        )

    def build(self) -> Advert:
        """The advert to publish now; :class:`NothingToOffer` when every GPU has failed."""
        capacity = self.capacity()
        gpus = self.offered_gpus()
        if self.offer.gpus and not gpus:
            raise NothingToOffer("every GPU failed its health check: no advert is published")
        return Advert(
            provider=self.identity.address,
            peer_id=self.identity.peer_id,
            multiaddrs=tuple((self.announce or tuple(self.node.addrs))[:MAX_MULTIADDRS]),
            gpus=gpus,
            benchmark=self.offer.benchmark,
            fingerprint=self.offer.fingerprint,
            price_per_gpu_hour=self.price,
            price_per_cpu_hour=self.cpu_price,
            free_gpus=min(capacity.free_gpus, len(gpus)),
            utilization=min(1.0, max(0.0, capacity.utilization)),
            gpu_utilization=capacity.gpu_utilization,
            runtimes=self.runtimes,
            software=self.software,
            packages=self.packages,
            seq=self.sequence.next(),
            expires_at=int(self.clock.now()) + self.ttl_s,
            max_queued=capacity.max_queued,
            max_input_bytes=self.max_input_bytes,
        )

    async def publish_once(self) -> None:
        data = encode_signed(sign_message(self.build(), self.identity))
        if len(data) > MAX_ADVERT_BYTES:
            raise GpuMarketError(f"advert of {len(data)} bytes exceeds {MAX_ADVERT_BYTES}")
        await self.publisher.publish(data)
        self.published += 1

    async def run(self) -> None:
        """Publish every ``period_s`` until cancelled; a failed publish is logged and retried."""
        while True:
            try:
                await self.publish_once()
            except GpuMarketError as exc:
                log.warning("publishing an advert failed: %s", exc)
            await trio.sleep(self.period_s)
