"""Hostile peers against a live devnet coordinator: what each attack does to it.

Starts its own devnet (loopback only, in a temporary directory, always torn down) and runs
five bounded attacks, one at a time, while a background thread polls ``GET /health`` every
50 ms and samples the coordinator's RSS:

- ``deep_json``: ``POST /jobs`` with JSON nested 100,000 levels (and a small deep one);
- ``big_body``: a 200 MB streamed ``POST /jobs`` body;
- ``stranger_reports``: up to 2,000 signed LogChunks for unknown jobs from one fresh key;
- ``stranger_adverts``: adverts from fresh unstaked keys (one libp2p host per key, since a
  peer id must match its key), ``HOSTS`` keys x ``ADVERTS_PER_HOST`` adverts;
- ``stream_flood``: 64 concurrent report streams from one peer, held open.

Then one honest job goes through the wallet CLI and must settle. Prints a table, and with
``--json`` one JSON line at the end::

    python -m bench.abuse --json
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import trio

from devnet import network
from devnet.process import is_alive
from protocol.devnet_state import DevnetState, load_state
from protocol.errors import GpuMarketError
from protocol.identity import Identity
from protocol.ids import JobId
from protocol.messages import Advert, ErrorReply, LogChunk
from protocol.p2p.errors import RemoteError
from protocol.p2p.framing import close_stream, read_frame
from protocol.p2p.gossip import subscribe, wait_for_topic_peers
from protocol.p2p.host import open_host
from protocol.p2p.rpc_client import KeptStream
from protocol.p2p.rpc_wire import Limits, Status
from protocol.registry import ADVERT_TOPIC, REPORT_PROTOCOL
from protocol.signing import decode_signed, encode_signed, sign_message
from tests.e2e.market import REPO, Market

PROVIDERS = 2
POLL_S = 0.05
HEALTH_TIMEOUT_S = 2.0
DEEP_LEVELS = 100_000
BIG_BODY_MB = 200
REPORTS = 2_000
REPORTS_DEADLINE_S = 60.0
HOSTS = 30
ADVERTS_PER_HOST = 10
HOSTS_AT_ONCE = 5
STREAMS = 64
STREAM_HOLD_S = 5.0
SETTLE_S = 4.0
TAIL_S = 1.0
HONEST_SPEC = REPO / "examples" / "matmul" / "job.yaml"
Attack = Callable[[DevnetState], Awaitable[dict[str, Any]]]


def rss_bytes(pid: int) -> int:
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except Exception:
        pass
    return 0


class Monitor:
    """Polls /health every ``POLL_S`` and samples RSS on a thread until stopped.

    A failed or timed-out poll counts as ``HEALTH_TIMEOUT_S`` so that p99 shows it.
    """

    def __init__(self, url: str, pid: int) -> None:
        self.url = url
        self.pid = pid
        self.latencies_ms: list[float] = []
        self.failures = 0
        self.rss_start = rss_bytes(pid)
        self.rss_max = self.rss_start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-monitor", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=HEALTH_TIMEOUT_S) as client:
            while True:  # poll first, so even an attack of a few ms has a sample
                started = time.monotonic()
                try:
                    ok = client.get(self.url + "/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.monotonic() - started) * 1000
                self.latencies_ms.append(elapsed if ok else HEALTH_TIMEOUT_S * 1000)
                self.failures += 0 if ok else 1
                self.rss_max = max(self.rss_max, rss_bytes(self.pid))
                if self._stop.wait(POLL_S):
                    return

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(TAIL_S)  # an attack's after-effects count too
        self._stop.set()
        self._thread.join(timeout=HEALTH_TIMEOUT_S + 1)

    def p99_ms(self) -> float:
        if not self.latencies_ms:
            return HEALTH_TIMEOUT_S * 1000
        ordered = sorted(self.latencies_ms)
        return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1)


def health_ok(url: str, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=HEALTH_TIMEOUT_S).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


# ---------------------------------------------------------------------- HTTP attacks
def _post(url: str, content: bytes | Iterator[bytes], timeout: float = 60.0) -> str:
    try:
        response = httpx.post(
            url + "/jobs",
            content=content,
            headers={"content-type": "application/json"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        return type(exc).__name__  # the server may close before the body is all sent
    return str(response.status_code)


async def deep_json(state: DevnetState) -> dict[str, Any]:
    url = state.coordinator_url or ""
    huge = b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS
    small = b"[" * 2000 + b"]" * 2000  # under the byte cap, so only the depth check stops it
    return {
        "deep_status": await trio.to_thread.run_sync(_post, url, huge),
        "deep_small_status": await trio.to_thread.run_sync(_post, url, small),
    }


async def big_body(state: DevnetState) -> dict[str, Any]:
    url = state.coordinator_url or ""
    sent = [0]

    def chunks() -> Iterator[bytes]:
        block = b"{" + b" " * (1024 * 1024 - 1)
        for _ in range(BIG_BODY_MB):
            sent[0] += len(block)
            yield block

    status = await trio.to_thread.run_sync(_post, url, chunks())
    return {"big_status": status, "big_sent_mb": round(sent[0] / 2**20, 1)}


# ---------------------------------------------------------------------- libp2p attacks
def coordinator_peer(state: DevnetState) -> tuple[str, Any]:
    addr = state.coordinator_multiaddr or ""
    return addr, addr.rsplit("/p2p/", 1)[1]


async def stranger_reports(state: DevnetState) -> dict[str, Any]:
    addr, _ = coordinator_peer(state)
    stranger = Identity.generate()
    counts = {"accepted": 0, "refused": 0, "failed": 0}
    limits = Limits(max_request_bytes=64 * 1024, max_response_bytes=64 * 1024, timeout_s=10.0)
    sent = 0
    async with open_host(stranger.private_key) as node:
        peer = await node.connect(addr)
        async with KeptStream(node, peer, REPORT_PROTOCOL, limits) as kept:
            with trio.move_on_after(REPORTS_DEADLINE_S):
                for i in range(REPORTS):
                    body = LogChunk(
                        job_id=JobId(os.urandom(32)),
                        provider=stranger.address,
                        stream="stdout",
                        offset=i,
                        data=b"spam",
                    )
                    sent += 1
                    try:
                        reply = await kept.request(encode_signed(sign_message(body, stranger)))
                    except RemoteError:
                        counts["refused"] += 1
                        continue
                    except GpuMarketError:
                        counts["failed"] += 1
                        continue
                    try:
                        refused = isinstance(decode_signed(reply).body, ErrorReply)
                    except GpuMarketError:
                        refused = False
                    counts["refused" if refused else "accepted"] += 1
    return {"reports_sent": sent, **{f"reports_{k}": v for k, v in counts.items()}}


async def capture_template(addr: str) -> Advert:
    """A real provider's advert from the topic, to copy its shape."""
    watcher = Identity.generate()
    async with open_host(watcher.private_key) as node:
        await node.connect(addr)
        with trio.fail_after(60):
            async with subscribe(node, ADVERT_TOPIC, lambda data, sender: data) as adverts:
                async for delivery in adverts:
                    body = decode_signed(delivery.value).body
                    if isinstance(body, Advert):
                        return body
    raise RuntimeError("no advert seen on the topic")


async def stranger_adverts(state: DevnetState) -> dict[str, Any]:
    addr, _ = coordinator_peer(state)
    template = await capture_template(addr)
    strangers = [Identity.generate() for _ in range(HOSTS)]
    published = [0]
    limiter = trio.CapacityLimiter(HOSTS_AT_ONCE)

    async def one_host(me: Identity) -> None:
        async with limiter, open_host(me.private_key) as node:
            try:
                await node.connect(addr)
                await wait_for_topic_peers(node, ADVERT_TOPIC, 1, timeout=10)
            except GpuMarketError:
                return
            for seq in range(1, ADVERTS_PER_HOST + 1):
                body = template.model_copy(
                    update={
                        "provider": me.address,
                        "peer_id": node.peer_id,
                        "multiaddrs": tuple(node.addrs),
                        "seq": seq,
                        "expires_at": int(time.time()) + 120,
                    }
                )
                await node.pubsub.publish(ADVERT_TOPIC, encode_signed(sign_message(body, me)))
                published[0] += 1
            await trio.sleep(1.0)  # let gossip carry them before the host goes

    async with trio.open_nursery() as nursery:
        for me in strangers:
            nursery.start_soon(one_host, me)
    await trio.sleep(SETTLE_S)
    listed = await trio.to_thread.run_sync(_listed, state.coordinator_url or "")
    leaked = len(listed & {s.address for s in strangers})
    return {"advert_keys": HOSTS, "adverts_published": published[0], "adverts_listed": leaked}


def _listed(url: str) -> set[str]:
    providers = httpx.get(url + "/providers", timeout=10).json()["providers"]
    return {p["address"] for p in providers}


async def stream_flood(state: DevnetState) -> dict[str, Any]:
    addr, _ = coordinator_peer(state)
    me = Identity.generate()
    opened = [0]
    refused = [0]
    async with open_host(me.private_key) as node:
        peer = await node.connect(addr)

        async def hold() -> None:
            try:
                stream = await node.open_stream(peer, [REPORT_PROTOCOL], timeout=10)
            except Exception:
                refused[0] += 1
                return
            opened[0] += 1
            try:
                # Over its per-peer quota the server answers REFUSED at once and closes;
                # a stream it admitted stays silent until it sends a request.
                with trio.move_on_after(STREAM_HOLD_S):
                    frame = await read_frame(stream, max_size=4096, timeout=STREAM_HOLD_S)
                    if frame and frame[0] == Status.REFUSED:
                        refused[0] += 1
                        return
                    await trio.sleep(STREAM_HOLD_S)
            except GpuMarketError:
                pass  # the stream ended without a reply: held and then dropped
            finally:
                with trio.move_on_after(2):
                    await close_stream(stream, reset=True)

        async with trio.open_nursery() as nursery:
            for _ in range(STREAMS):
                nursery.start_soon(hold)
    return {"streams_opened": opened[0], "streams_refused_by_quota": refused[0]}


ATTACKS: dict[str, Attack] = {
    "deep_json": deep_json,
    "big_body": big_body,
    "stranger_reports": stranger_reports,
    "stranger_adverts": stranger_adverts,
    "stream_flood": stream_flood,
}


# ---------------------------------------------------------------------- run
def run_attack(name: str, attack: Attack, state: DevnetState, pid: int) -> dict[str, Any]:
    url = state.coordinator_url or ""
    detail: dict[str, Any]
    with Monitor(url, pid) as monitor:
        try:
            detail = trio.run(attack, state)
        except Exception as exc:
            detail = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    survived = is_alive(pid) and health_ok(url)
    return {
        "survived": survived,
        "health_p99_ms": monitor.p99_ms(),
        "health_failures": monitor.failures,
        "rss_growth_mb": round((monitor.rss_max - monitor.rss_start) / 2**20, 1),
        **detail,
    }


def stranger_rows(state: DevnetState) -> int:
    """Rows in the coordinator's database naming an address that is no devnet account."""
    db = Path(state.root or "") / "coordinator" / "coordinator.sqlite"
    known = [a.address.lower() for a in state.accounts]
    marks = ",".join("?" * len(known))
    total = 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        for table, column in (
            ("reputations", "address"),
            ("job_providers", "address"),
            ("job_declines", "address"),
            ("job_logs", "provider"),
        ):
            sql = f"select count(*) from {table} where lower({column}) not in ({marks})"
            total += int(conn.execute(sql, known).fetchone()[0])
    return total


def honest_job(state_file: Path, workdir: Path) -> float | None:
    """Seconds for one honest job to settle through the wallet CLI; None if it did not."""
    market = Market(state_file, workdir)
    requester = market.new_requester()
    started = time.monotonic()
    try:
        job = market.submit(HONEST_SPEC, requester)["job"]
    except (AssertionError, OSError, ValueError) as exc:
        print(f"honest job failed: {exc}"[:500], file=sys.stderr)
        return None
    return round(time.monotonic() - started, 1) if job.get("state") == "settled" else None


def run(workdir: Path) -> dict[str, Any]:
    state_file = workdir / "devnet" / "state.json"
    try:
        network.up(state_file, providers=PROVIDERS)
        state = load_state(state_file)
        market = Market(state_file, workdir)
        market.wait_providers(lambda listed: len(listed) >= PROVIDERS, timeout=90)
        pid = next(p.pid for p in state.processes if p.name == "coordinator")
        attacks = {name: run_attack(name, a, state, pid) for name, a in ATTACKS.items()}
        settled_after = honest_job(state_file, workdir)
        rows = stranger_rows(load_state(state_file))
    finally:
        if state_file.exists():
            network.down(state_file)
    return {
        "coordinator_survived": all(a["survived"] for a in attacks.values()),
        "health_p99_ms_under_load": max(a["health_p99_ms"] for a in attacks.values()),
        "rss_growth_mb_max": max(a["rss_growth_mb"] for a in attacks.values()),
        "stranger_rows_written": rows,
        "honest_job_settled_after": settled_after is not None,
        "honest_job_settle_s": settled_after,
        "attacks": attacks,
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"{'attack':<18} {'survived':>8} {'p99 ms':>8} {'fails':>6} {'RSS +MB':>8}  detail")
    for name, a in result["attacks"].items():
        common = ("survived", "health_p99_ms", "health_failures", "rss_growth_mb")
        detail = ", ".join(f"{k}={v}" for k, v in a.items() if k not in common)
        print(
            f"{name:<18} {a['survived']!s:>8} {a['health_p99_ms']:>8} "
            f"{a['health_failures']:>6} {a['rss_growth_mb']:>8}  {detail}"
        )
    print(f"stranger rows written: {result['stranger_rows_written']}")
    print(
        f"honest job settled after the attacks: {result['honest_job_settled_after']} "
        f"({result['honest_job_settle_s']} s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gpumarket-abuse-") as tmp:
        result = run(Path(tmp))
    print_table(result)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0 if result["coordinator_survived"] else 1


if __name__ == "__main__":
    sys.exit(main())
