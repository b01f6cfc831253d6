"""Builders the provider tests share: a CPU host's offer and an advertiser for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protocol.identity import Identity
from protocol.ids import Wei
from protocol.messages.advert import Benchmark, Fingerprint
from protocol.p2p.host import Node
from provider_node.advertiser import Advertiser, Capacity
from provider_node.jobstore import SequenceFile
from provider_node.profile import HostOffer

CPU_OFFER = HostOffer(
    gpus=(),
    gpu_indices=(),
    benchmark=Benchmark(tflops={"fp32": 0.5}, memory_bandwidth_gbps=10.0),
    fingerprint=Fingerprint(backend="cpu", gpu_model="cpu", torch="2.13.0"),
    device="cpu",
)
"""A CPU host claiming 0.5 fp32 TFLOPS."""


def cpu_advertiser(node: Node, identity: Identity, work_dir: Path, **options: Any) -> Advertiser:
    """An advertiser of :data:`CPU_OFFER` at 1 base unit an hour, no GPU free, its sequence
    kept in ``work_dir``; ``options`` go to :class:`Advertiser` as they are."""
    return Advertiser(
        node,
        identity,
        CPU_OFFER,
        price_per_gpu_hour=Wei(1),
        price_per_cpu_hour=Wei(1),
        runtimes=("torch",),
        capacity=lambda: Capacity(free_gpus=0, utilization=0.0),
        sequence=SequenceFile(work_dir / "seq.json"),
        **options,
    )
