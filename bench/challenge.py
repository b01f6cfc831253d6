"""The exact per-dtype benchmark challenge, honest and spoofed, on this machine's CPU.

In process, through the functions the provider and coordinator use for it
(``proofs.challenge.device_row_digests`` on torch's ``cpu`` device; ``pick_exact_rows``,
``ExactChecker`` and ``judge_exact`` on the verifier's side); libp2p is not in the loop.
The verifier's clock is the wall clock around the whole provider call (input generation,
device work, digests to the host, Merkle tree), as a coordinator's would be minus the
network.

Per dtype: a calibration of ``--calibrate`` honest runs gives the provider's measured
speed S (the median of the timed part) and the timing terms from measured noise
(``slack`` = 1.25 x the 90th percentile of the calibration runs over their median;
``allowance_s`` = 1.5 x the largest untimed overhead). Then ``--trials`` challenges each
of: an honest provider claiming S; a provider claiming 2 S and one claiming 1.1 S. A
spoofer computes as many products as fit in the bound at its true speed (with a 5%
margin) and commits random digests for the rest: it fails when it misses the bound or
when an opened row (16 a challenge) is one it skipped.

With ``--libp2p`` the same providers also answer over real libp2p hosts on loopback: the
coordinator's ``Challenger`` (sizing, timing on its own clock, row picks, ``judge_exact``)
against the provider's ``ChallengeServer``, at m from the table and k = 4096 (the
challenger's). The allowance grows by 1.5 x the largest round-trip overhead (request wall
time minus the provider's timed part) of three warm-up challenges; the spoofer is told the
same bound.

With ``--devices N`` each challenge is also split over N CPU "devices" (one thread each,
so N should not exceed the free cores): answered by a host with all N (honest) and by one
device computing every share in turn, which commits the same digests and is caught by the
time bound alone (one device's share at the claim).

    python -m bench.challenge [--json] [--trials 50] [--libp2p] [--devices 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import trio

from proofs.challenge import (
    CHALLENGE_DTYPES,
    ExactChallenge,
    ExactWork,
    device_row_digests,
)
from proofs.challenge_check import (
    ExactChecker,
    ExactTiming,
    judge_exact,
    pick_exact_rows,
)

OPENED_ROWS = 16
SLACK_MARGIN = 1.25
"""The bound's slack is this times the calibration runs' 90th percentile over their median
(a percentile, not the slowest: one stall of a shared machine would open the bound to 2x)."""
TARGET_S = 0.4
"""Compute per challenge at the claimed speed (CPU-sized; a GPU's is 1-2 s)."""
SHAPES = {"bf16": (256, 4096), "fp16": (64, 1024), "tf32": (256, 4096), "fp32": (256, 4096)}
"""(m, k) per dtype: torch's CPU fp16 matmul runs at a few GFLOPS, so its shape is small."""


@dataclass
class Calibration:
    tflops: float
    terms: ExactTiming
    overhead_s: float


def _challenge(dtype: str, reps: int) -> ExactChallenge:
    m, k = SHAPES[dtype]
    return ExactChallenge(os.urandom(32), dtype, m=m, k=k, reps=reps)


def _timed(respond: Callable[[], ExactWork]) -> tuple[ExactWork, float]:
    start = time.perf_counter()
    work = respond()
    return work, time.perf_counter() - start


def calibrate(dtype: str, runs: int) -> Calibration:
    m, k = SHAPES[dtype]
    probe = _challenge(dtype, 2)
    device_row_digests(probe, "cpu")  # warm-up
    per_rep = min(device_row_digests(probe, "cpu").elapsed_s for _ in range(3)) / 2
    reps = max(1, math.ceil(TARGET_S / per_rep))
    elapsed, overhead = [], []
    for _ in range(runs):
        ch = _challenge(dtype, reps)
        work, wall = _timed(lambda ch=ch: device_row_digests(ch, "cpu"))  # type: ignore[misc]
        elapsed.append(work.elapsed_s)
        overhead.append(wall - work.elapsed_s)
    median = statistics.median(elapsed)
    tflops = 2 * m * m * k * reps / median / 1e12
    terms = ExactTiming(
        slack=SLACK_MARGIN * statistics.quantiles(elapsed, n=10)[-1] / median,
        allowance_s=1.5 * max(overhead),
    )
    return Calibration(tflops, terms, statistics.median(overhead))


def spoofer(ch: ExactChallenge, cal: Calibration, factor: float) -> ExactWork:
    """A provider whose true speed is ``cal.tflops`` and that claimed ``factor`` times it."""
    claimed = cal.tflops * factor
    bound = ch.flops / (claimed * 1e12) * cal.terms.slack + cal.terms.allowance_s
    per_rep = ch.flops / ch.reps / (cal.tflops * 1e12)
    fit = min(ch.reps, max(0, math.floor(0.95 * (bound - cal.overhead_s) / per_rep)))
    digests = np.frombuffer(os.urandom(8 * ch.row_count), dtype=np.uint64).copy()
    reopen_done: Callable[[int], np.ndarray] | None = None
    elapsed = 0.0
    if fit:
        done = device_row_digests(
            ExactChallenge(ch.seed, ch.dtype, m=ch.m, k=ch.k, reps=fit), "cpu"
        )
        digests[: fit * ch.m] = done.digests
        reopen_done = done._reopen
        elapsed = done.elapsed_s
    m, dtype = ch.m, ch.dtype

    def reopen(rep: int) -> np.ndarray:
        if reopen_done is not None and rep < fit:
            return reopen_done(rep)
        width = 2 if dtype in ("bf16", "fp16") else 4
        return np.zeros((m, m), dtype=f"<u{width}")

    return ExactWork(ch, digests, elapsed, reopen)


def trial(dtype: str, cal: Calibration, factor: float, reps: int, row_times: list[float]) -> bool:
    ch = _challenge(dtype, reps)
    claimed = cal.tflops * factor
    if factor == 1.0:
        work, wall = _timed(lambda: device_row_digests(ch, "cpu"))
    else:
        work, wall = _timed(lambda: spoofer(ch, cal, factor))
    picks = pick_exact_rows(ch, work.root, os.urandom(32), OPENED_ROWS)
    openings = work.open(picks)
    checker = ExactChecker(ch)
    start = time.process_time()
    for o in openings:
        checker.check(work.root, o)
    row_times.append((time.process_time() - start) / len(openings))
    verdict = judge_exact(ch, claimed, work.root, wall, picks, openings, cal.terms, checker)
    return verdict.passed


def devices_trial(dtype: str, cal: Calibration, devices: int, reps: int, one: bool) -> bool:
    """A challenge split over ``devices`` CPU "devices" (one thread each), answered by a
    host that has them all (``one`` False) or by one device computing every share in turn
    (the same digests, so only the time can catch it)."""
    m, k = SHAPES[dtype]
    ch = ExactChallenge(os.urandom(32), dtype, m=m, k=k, reps=reps * devices, devices=devices)
    if one:
        alone = ExactChallenge(ch.seed, dtype, m=m, k=k, reps=ch.reps)
        done, wall = _timed(lambda: device_row_digests(alone, "cpu"))
        work = ExactWork(ch, done.digests, done.elapsed_s, done._reopen)
    else:
        work, wall = _timed(lambda: device_row_digests(ch, ["cpu"] * devices))
    picks = pick_exact_rows(ch, work.root, os.urandom(32), OPENED_ROWS)
    verdict = judge_exact(ch, cal.tflops, work.root, wall, picks, work.open(picks), cal.terms)
    return verdict.passed


class _Timed:
    """A transport that records the wall time of each challenge request."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.walls: list[float] = []

    async def request(
        self, peer: Any, multiaddrs: Any, protocol_id: str, payload: bytes, timeout_s: float
    ) -> bytes:
        start = time.perf_counter()
        raw: bytes = await self.inner.request(peer, multiaddrs, protocol_id, payload, timeout_s)
        self.walls.append(time.perf_counter() - start)
        return raw


def _advert(who: Any, addrs: tuple[str, ...], dtype: Any, tflops: float) -> Any:
    from protocol.ids import Wei
    from protocol.messages import Advert, Benchmark, Fingerprint

    return Advert(
        provider=who.address,
        peer_id=who.peer_id,
        multiaddrs=addrs,
        gpus=(),
        benchmark=Benchmark(tflops={dtype: tflops}, memory_bandwidth_gbps=10.0),
        fingerprint=Fingerprint(backend="cpu", gpu_model="cpu", torch="bench"),
        price_per_gpu_hour=Wei(1),
        price_per_cpu_hour=Wei(1),
        free_gpus=0,
        utilization=0.0,
        runtimes=("torch",),
        software={"gpumarket": "bench"},
        seq=1,
        expires_at=int(time.time()) + 3600,
    )


async def _libp2p_rates(dtype: str, cal: Calibration, trials: int) -> dict[str, float]:
    from coordinator.matching.book import ProviderBook
    from coordinator.verification.challenger import Challenger
    from coordinator.wire.transport import Libp2pTransport
    from protocol.identity import Identity
    from protocol.messages.advert import Dtype
    from protocol.p2p.host import open_host
    from protocol.p2p.rpc_server import RequestHandlers
    from protocol.registry import CHALLENGE_PROTOCOL
    from provider_node.challenges import ChallengeServer
    from provider_node.daemon import CHALLENGE_LIMITS

    m = SHAPES[dtype][0]
    d = cast(Dtype, dtype)
    timed: list[float] = []
    spoof_cal = Calibration(cal.tflops, cal.terms, cal.overhead_s)

    def honest(ch: ExactChallenge, devices: Sequence[str]) -> ExactWork:
        work = device_row_digests(ch, devices)
        timed.append(work.elapsed_s)
        return work

    def spoof(ch: ExactChallenge, devices: Sequence[str]) -> ExactWork:
        return spoofer(ch, spoof_cal, 2.0)

    coordinator = Identity.generate()
    async with open_host(coordinator.private_key) as coordinator_host:
        transport = _Timed(Libp2pTransport(coordinator_host))
        book = ProviderBook(time.time)
        challenger = Challenger(coordinator, transport, book, n=m, target_s=TARGET_S)
        challenger.terms = ExactTiming(slack=cal.terms.slack, allowance_s=600.0)
        out: dict[str, float] = {}
        for name, factor, respond in (("honest", 1.0, honest), ("spoof2x", 2.0, spoof)):
            who = Identity.generate()
            claim = cal.tflops * factor
            server = ChallengeServer(
                who,
                claims={d: claim},
                rate_max=10**6,
                respond=respond,
            )
            async with open_host(who.private_key) as host:
                RequestHandlers(host).register(CHALLENGE_PROTOCOL, server.handle, CHALLENGE_LIMITS)
                assert book.accept(_advert(who, tuple(host.addrs), dtype, claim))
                if factor == 1.0:  # warm-up: the round trip's overhead sets the allowance
                    for _ in range(3):
                        transport.walls.clear()
                        timed.clear()
                        await challenger.challenge_dtype(who.address, d, claim)
                        out.setdefault("rtt_overhead_s", 0.0)
                        out["rtt_overhead_s"] = max(
                            out["rtt_overhead_s"], transport.walls[0] - timed[0]
                        )
                    allowance = 1.5 * out["rtt_overhead_s"]
                    challenger.terms = ExactTiming(slack=cal.terms.slack, allowance_s=allowance)
                    spoof_cal.terms = challenger.terms
                    spoof_cal.overhead_s = out["rtt_overhead_s"]
                passed = [
                    await challenger.challenge_dtype(who.address, d, claim) for _ in range(trials)
                ]
            rate = sum(passed) / len(passed)
            out[f"libp2p_{name}_{'pass_rate' if factor == 1.0 else 'detect'}"] = round(
                rate if factor == 1.0 else 1.0 - rate, 4
            )
        out["libp2p_allowance_s"] = round(challenger.terms.allowance_s, 4)
        out["rtt_overhead_s"] = round(out["rtt_overhead_s"], 4)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--calibrate", type=int, default=24)
    ap.add_argument("--dtypes", default=",".join(CHALLENGE_DTYPES))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier)")
    ap.add_argument("--libp2p", action="store_true", help="also challenge over loopback libp2p")
    ap.add_argument(
        "--devices",
        type=int,
        default=0,
        help="also split challenges over this many CPU devices (threads; at most the cores), "
        "answered by all of them and by one alone",
    )
    args = ap.parse_args()
    # The bench's own process: the challenger's line per failed spoof would drown the table.
    logging.getLogger("coordinator.verification.challenger").setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    figures: dict[str, dict[str, float]] = {}
    for dtype in args.dtypes.split(","):
        cal = calibrate(dtype, args.calibrate)
        m, k = SHAPES[dtype]
        reps_at = {
            f: max(1, math.ceil(TARGET_S * cal.tflops * f * 1e12 / (2 * m * m * k)))
            for f in (1.0, 1.1, 2.0)
        }
        row_times: list[float] = []
        rates = {}
        for name, factor in (
            ("honest_pass_rate", 1.0),
            ("spoof2x_detect", 2.0),
            ("spoof1p1_detect", 1.1),
        ):
            passed = [
                trial(dtype, cal, factor, reps_at[factor], row_times) for _ in range(args.trials)
            ]
            rate = sum(passed) / len(passed)
            rates[name] = round(rate if factor == 1.0 else 1.0 - rate, 4)
        figures[dtype] = {
            **rates,
            "trials": args.trials,
            "claimed_gflops": round(cal.tflops * 1e3, 2),
            "m": m,
            "k": k,
            "slack": round(cal.terms.slack, 3),
            "allowance_s": round(cal.terms.allowance_s, 4),
            "verify_cpu_ms_per_row": round(1e3 * statistics.median(row_times), 3),
        }
        if args.libp2p:
            figures[dtype].update(trio.run(_libp2p_rates, dtype, cal, args.trials))
        if args.devices > 1:
            n, per = args.devices, reps_at[1.0]
            both = [devices_trial(dtype, cal, n, per, False) for _ in range(args.trials)]
            alone = [devices_trial(dtype, cal, n, per, True) for _ in range(args.trials)]
            figures[dtype]["devices"] = n
            figures[dtype]["devices_honest_pass_rate"] = round(sum(both) / len(both), 4)
            figures[dtype]["one_device_for_all_detect"] = round(1 - sum(alone) / len(alone), 4)
            print(
                f"      on {n} devices at once: honest pass "
                f"{figures[dtype]['devices_honest_pass_rate']:.2f}  one device posing as {n} "
                f"detected {figures[dtype]['one_device_for_all_detect']:.2f}",
                flush=True,
            )
        f = figures[dtype]
        print(
            f"{dtype:<5} m={m:<4} k={k:<5} claim {f['claimed_gflops']:>8.1f} GFLOPS  "
            f"slack {f['slack']:.2f} allowance {f['allowance_s']:.3f}s  "
            f"honest pass {f['honest_pass_rate']:.2f}  2x detect {f['spoof2x_detect']:.2f}  "
            f"1.1x detect {f['spoof1p1_detect']:.2f}  "
            f"verify {f['verify_cpu_ms_per_row']:.2f} ms/row",
            flush=True,
        )
        if args.libp2p:
            print(
                f"      over libp2p: honest pass {f['libp2p_honest_pass_rate']:.2f}  "
                f"2x detect {f['libp2p_spoof2x_detect']:.2f}  "
                f"round-trip overhead {f['rtt_overhead_s']:.3f}s  "
                f"allowance {f['libp2p_allowance_s']:.3f}s",
                flush=True,
            )
    wall = time.perf_counter() - started
    print(f"run time {wall:.1f}s")
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "challenge",
                    "in_process": True,
                    "libp2p": args.libp2p,
                    "dtypes": figures,
                    "wall_s": round(wall, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
