"""Advert propagation and request/response latency over real libp2p on loopback.

Scenarios, all hosts in this one process (so they share its CPU):

* ``coordinator``: 1 coordinator subscribed to the advert topic, N-1 providers connected
  to it (a star) publishing signed adverts; latency from publish to delivery of a
  verified advert at the coordinator.
* ``mesh``: N hosts in a ring with chords, all subscribed; every advert is measured at
  every other host (multi-hop GossipSub propagation). With every host in one Python
  process this one is CPU-bound: each advert is decoded and signature-checked N-1 times.
* ``rpc``: request/response round trips on a kept stream.

Usage: ``python -m bench.adverts [--hosts 20] [--rounds 3] [--json]``
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import trio

from protocol.identity import Identity
from protocol.ids import PeerId, Wei
from protocol.messages import Advert, Benchmark, Fingerprint, GpuInfo
from protocol.p2p.adverts import AdvertPublisher, subscribe_adverts
from protocol.p2p.gossip import ValidatedSubscription, wait_for_mesh, wait_for_topic_peers
from protocol.p2p.rpc_client import KeptStream
from protocol.p2p.rpc_server import RequestHandlers
from protocol.p2p.testing import Topology, dev_private_key, start_hosts
from protocol.registry import ADVERT_TOPIC
from protocol.signing import SignedMessage, sign_message

ECHO = "/gpumarket-bench/echo/1.0.0"


@dataclass
class Latencies:
    samples_ms: list[float] = field(default_factory=list)
    expected: int = 0

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_advert(identity: Identity, seq: int) -> SignedMessage:
    body = Advert(
        provider=identity.address,
        peer_id=identity.peer_id,
        multiaddrs=("/ip4/127.0.0.1/tcp/4001",),
        gpus=(GpuInfo(name="NVIDIA H100 80GB HBM3", memory_bytes=80 * 2**30),),
        benchmark=Benchmark(tflops={"fp32": 51.0, "bf16": 610.0}, memory_bandwidth_gbps=2900.0),
        fingerprint=Fingerprint(backend="cuda", gpu_model="H100", torch="2.13.0"),
        price_per_gpu_hour=Wei(2_500_000),
        price_per_cpu_hour=Wei(100_000),
        free_gpus=1,
        utilization=0.0,
        runtimes=("torch",),
        software={"gpumarket": "0.1.0"},
        seq=seq,
        expires_at=int(time.time()) + 600,
    )
    return sign_message(body, identity.private_key)


async def measure_adverts(
    hosts: int, topology: Topology, subscribers: str, rounds: int, gap_s: float
) -> Latencies:
    """Each host publishes ``rounds`` adverts, one host every ``gap_s`` seconds."""
    identities = [Identity.from_private_key(dev_private_key(i)) for i in range(hosts)]
    sent: dict[tuple[str, int], float] = {}
    result = Latencies()
    async with start_hosts(hosts, topology) as nodes, AsyncExitStack() as stack:
        listening = nodes if subscribers == "all" else nodes[:1]
        publishing = nodes if subscribers == "all" else nodes[1:]
        subs = [await stack.enter_async_context(subscribe_adverts(n)) for n in listening]
        for node in publishing:
            await wait_for_topic_peers(node, ADVERT_TOPIC, 1, timeout=20)
        if subscribers == "all":
            for node in nodes:
                await wait_for_mesh(node, ADVERT_TOPIC, 1, timeout=20)
        await trio.sleep(2.0)  # let meshes settle past their first heartbeats
        result.expected = rounds * len(publishing) * (len(listening) - (subscribers == "all"))

        async def listen(sub: ValidatedSubscription[SignedMessage]) -> None:
            async for delivery in sub:
                body = delivery.value.body
                assert isinstance(body, Advert)
                now = trio.current_time()
                result.samples_ms.append((now - sent[(body.provider, body.seq)]) * 1000)

        async with trio.open_nursery() as nursery:
            for sub in subs:
                nursery.start_soon(listen, sub)
            publishers = {n.peer_id: AdvertPublisher(n) for n in publishing}
            by_peer: dict[PeerId, Identity] = {i.peer_id: i for i in identities}
            for seq in range(1, rounds + 1):
                for node in publishing:
                    identity = by_peer[node.peer_id]
                    signed = make_advert(identity, seq)
                    sent[(identity.address, seq)] = trio.current_time()
                    await publishers[node.peer_id].publish(signed)
                    await trio.sleep(gap_s)
            with trio.move_on_after(5.0):
                while len(result.samples_ms) < result.expected:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    return result


async def measure_rpc(requests: int) -> list[float]:
    async def echo(data: bytes, peer: PeerId) -> bytes:
        return data

    async with start_hosts(2, "chain") as (server, client):
        RequestHandlers(server).register(ECHO, echo)
        samples: list[float] = []
        async with KeptStream(client, server.peer_id, ECHO) as kept:
            await kept.request(b"warm-up")
            for i in range(requests):
                start = time.perf_counter()
                await kept.request(b"request %d" % i)
                samples.append((time.perf_counter() - start) * 1000)
        return samples


async def run(args: argparse.Namespace) -> dict[str, float | int]:
    coordinator = await measure_adverts(args.hosts, "star", "one", args.rounds, args.gap)
    mesh = await measure_adverts(args.hosts, "ring", "all", args.rounds, args.gap)
    rpc = await measure_rpc(args.requests)
    return {
        "hosts": args.hosts,
        "advert_gap_ms": args.gap * 1000,
        # The market's advert path: providers publish, the coordinator subscribes.
        "advert_p50_ms": round(coordinator.pct(0.50), 2),
        "advert_p95_ms": round(coordinator.pct(0.95), 2),
        "advert_delivered": len(coordinator.samples_ms),
        "advert_expected": coordinator.expected,
        "mesh_p50_ms": round(mesh.pct(0.50), 2),
        "mesh_p95_ms": round(mesh.pct(0.95), 2),
        "mesh_delivered": len(mesh.samples_ms),
        "mesh_expected": mesh.expected,
        "rpc_kept_median_ms": round(statistics.median(rpc), 3),
        "rpc_kept_p95_ms": round(sorted(rpc)[int(0.95 * len(rpc))], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--gap",
        type=float,
        default=0.25,
        help="seconds between two adverts network-wide (0.25: 20 providers, 5 s period)",
    )
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.getLogger("libp2p").setLevel(logging.ERROR)
    figures = trio.run(run, args)

    def row(name: str, p50: object, p95: object, count: str) -> None:
        print(f"{name:<38}{p50!s:>10}{p95!s:>10}{count:>14}")

    row("scenario", "p50 ms", "p95 ms", "delivered")
    f = figures
    row(
        f"adverts, {args.hosts - 1} providers -> coordinator",
        f["advert_p50_ms"],
        f["advert_p95_ms"],
        f"{f['advert_delivered']}/{f['advert_expected']}",
    )
    row(
        f"adverts, ring of {args.hosts}, all subscribed",
        f["mesh_p50_ms"],
        f["mesh_p95_ms"],
        f"{f['mesh_delivered']}/{f['mesh_expected']}",
    )
    row(
        "request/response, kept stream",
        f["rpc_kept_median_ms"],
        f["rpc_kept_p95_ms"],
        str(args.requests),
    )
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
