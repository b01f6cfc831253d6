"""Content store throughput and memory, measured against a real IPFS daemon.

On one file of random bytes (100 MiB by default) it times: the pure-Python CID
computation; the daemon's own add and cat driven by plain streaming httpx requests (the
floor any client pays); and the same through ``KuboContentStore`` (add with the local CID
check, cat and get with verification). Then, in a fresh child process, it moves a 1 GiB
artifact through add + verified download and reports how much that process's peak RSS
grew (target: under 100 MB, i.e. nothing held whole in memory).

Across nodes (``cross_node_*``): a second daemon B, connected to A as a swarm peer, fetches
a 256 MiB artifact that only A holds. ``cross_node_bitswap_mb_s`` is the baseline (B's
daemon fetches it over bitswap, ``KuboContentStore.get`` through B); ``cross_node_mb_s``
is the path the market uses between participants: B's store streams the file from A's
read-only gateway and verifies every byte against the CID, in a child process whose RSS
growth is ``cross_node_rss_growth_mb``. ``restart_resume_ok``: A is restarted while B reads
a fresh artifact from it, and the verified download still completes. ``--cross-only``
measures only these (two fresh daemons, no single-node figures).

What limits ``cross_node_mb_s`` on one shared 2-core machine: the first read of an artifact
is bound by the serving js-ipfs daemon reading blocks from its datastore in one node.js
thread; once it serves faster, by this side's fixed cost per socket read (httpcore, h11,
trio), not by hashing (sha2-256 runs at over 1 GB/s here). Reads are widened to 1 MiB
(``protocol/ipfs/wide.py``). Several ranges of one file in parallel were tried (windows of
2 to 8 ranges of 1 to 8 MiB) and were slower than one stream on this machine.

Starts its own js-ipfs/Kubo daemons on loopback unless ``--api`` names one (then the
cross-node figures are skipped). Big files live in a temporary directory that is removed
at the end. MB is 10^6 bytes.

    python -m bench.content [--json] [--quick] [--cross-only] [--api URL] [--size-mib 100]
        [--artifact-mib 1024] [--cross-mib 256]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import trio

from protocol.errors import ContentError
from protocol.ipfs import KuboContentStore, normalize_cid
from protocol.ipfs.kubo import ADD_PARAMS
from protocol.ipfs.local import file_ref

if TYPE_CHECKING:
    from devnet.ipfs import IpfsNode

MIB = 1 << 20
PIECE = MIB


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        left = size
        while left:
            n = min(4 * MIB, left)
            handle.write(os.urandom(n))
            left -= n


def mb_s(size: int, seconds: float) -> float:
    return round(size / 1e6 / seconds, 1)


async def best_of(rounds: int, run: Callable[[], Awaitable[Any]]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        await run()
        best = min(best, time.perf_counter() - start)
    return best


# -- the floor: the daemon API driven by plain streaming httpx requests -------------


async def plain_add(api: str, path: Path) -> str:
    boundary = "benchboundary0123456789"

    async def body() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{quote(path.name)}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        with open(path, "rb") as handle:
            while piece := handle.read(PIECE):
                yield piece
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with (
        httpx.AsyncClient(timeout=300) as client,
        client.stream(
            "POST", f"{api}/api/v0/add", params=dict(ADD_PARAMS), content=body(), headers=headers
        ) as resp,
    ):
        resp.raise_for_status()
        lines = [line async for line in resp.aiter_lines() if line.strip()]
    return normalize_cid(json.loads(lines[-1])["Hash"])


async def plain_cat(api: str, cid: str) -> int:
    total = 0
    async with (
        httpx.AsyncClient(timeout=300) as client,
        client.stream("POST", f"{api}/api/v0/cat", params={"arg": cid}) as resp,
    ):
        resp.raise_for_status()
        async for piece in resp.aiter_bytes():
            total += len(piece)
    return total


# -- through the client ---------------------------------------------------------------


async def client_cat(store: KuboContentStore, cid: str) -> int:
    total = 0
    async for piece in store.cat(cid, max_size=1 << 40):
        total += len(piece)
    return total


async def throughput(api: str, work: Path, size: int, rounds: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"size_mib": size // MIB}
    async with KuboContentStore(api, timeout=300) as store:
        # Every add gets content the daemon has never seen (re-adding known blocks is
        # cheaper), and the two clients take turns going first.
        added = {"plain": float("inf"), "client": float("inf")}
        expected = ""
        for turn in range(rounds):
            files = {who: work / f"{who}-{turn}.bin" for who in added}
            local = {}
            for who, path in files.items():
                write_random(path, size)
                start = time.perf_counter()
                local[who] = file_ref(path).text
                if turn == 0 and who == "plain":
                    figures["cid_mb_s"] = mb_s(size, time.perf_counter() - start)
                    expected = local[who]
            for who in sorted(added, reverse=turn % 2 == 1):
                start = time.perf_counter()
                if who == "plain":
                    got = await plain_add(api, files[who])
                else:
                    got = await store.add_file(files[who])
                added[who] = min(added[who], time.perf_counter() - start)
                if got != local[who]:
                    raise SystemExit(f"{who} add gave {got}, local CID is {local[who]}")
                files[who].unlink()
        plain_add_s, client_add_s = added["plain"], added["client"]
        figures["daemon_add_mb_s"] = mb_s(size, plain_add_s)
        figures["client_add_mb_s"] = mb_s(size, client_add_s)

        figures["daemon_cat_mb_s"] = mb_s(
            size, await best_of(rounds, lambda: plain_cat(api, expected))
        )
        figures["client_cat_mb_s"] = mb_s(
            size, await best_of(rounds, lambda: client_cat(store, expected))
        )

        async def run_get() -> None:
            dest = work / "fetched.bin"
            dest.unlink(missing_ok=True)
            await store.get(expected, dest, max_size=size)

        figures["client_get_mb_s"] = mb_s(size, await best_of(rounds, run_get))
        figures["daemon"] = (await store.version()).get("Version", "?")
    (work / "fetched.bin").unlink(missing_ok=True)
    return figures


# -- peak RSS of a process moving one big artifact -------------------------------------


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class RssGrowth:
    """This process's resident memory while the block runs: the baseline at entry and the
    peak above it (sampled every 20 ms, and the kernel's high-water mark, reset at entry
    so earlier imports do not count as growth)."""

    def __enter__(self) -> RssGrowth:
        self.baseline_kb = _rss_kb("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self._peak_kb = self.baseline_kb
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self._peak_kb = max(self._peak_kb, _rss_kb("VmRSS"))

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._sampler.join()
        self._peak_kb = max(self._peak_kb, _rss_kb("VmHWM"))

    @property
    def growth_mb(self) -> float:
        return round((self._peak_kb - self.baseline_kb) / 1024, 1)


def rss_probe(api: str, src: Path, dest: Path) -> None:
    """Child process: add + verified get of ``src``; prints baseline and peak RSS."""

    async def move() -> dict[str, float]:
        async with KuboContentStore(api, timeout=300) as store:
            await store.add_bytes(b"warm up imports and the connection pool")
            with RssGrowth() as rss:
                start = time.perf_counter()
                cid = await store.add_file(src)
                added = time.perf_counter()
                await store.get(cid, dest, max_size=src.stat().st_size)
                fetched = time.perf_counter()
            size = src.stat().st_size
            return {
                "baseline_mb": round(rss.baseline_kb / 1024, 1),
                "rss_growth_mb": rss.growth_mb,
                "add_mb_s": mb_s(size, added - start),
                "get_mb_s": mb_s(size, fetched - added),
            }

    print(json.dumps(trio.run(move)))


def artifact(api: str, work: Path, size: int) -> dict[str, Any]:
    src, dest = work / "artifact.bin", work / "artifact.out"
    write_random(src, size)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.content", "--rss-probe", api, str(src), str(dest)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            raise SystemExit(f"RSS probe failed: {done.stderr[-2000:]}")
        probe = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        src.unlink(missing_ok=True)
        dest.unlink(missing_ok=True)
    label = f"artifact_{size // MIB}mib" if size != 1 << 30 else "artifact_1gib"
    return {
        f"{label}_rss_growth_mb": probe["rss_growth_mb"],
        f"{label}_baseline_rss_mb": probe["baseline_mb"],
        f"{label}_add_mb_s": probe["add_mb_s"],
        f"{label}_get_mb_s": probe["get_mb_s"],
    }


# -- across nodes ---------------------------------------------------------------------


def cross_probe(api: str, gateway: str, cid: str, dest: Path, size: int) -> None:
    """Child process: verified get of ``cid`` through node ``api`` with ``gateway`` as the
    direct source; prints MB/s, RSS growth and where the bytes came from."""

    async def move() -> dict[str, Any]:
        async with KuboContentStore(api, timeout=300, gateways=[gateway]) as store:
            await store.version()
            with RssGrowth() as rss:
                start = time.perf_counter()
                await store.get(cid, dest, max_size=size)
                seconds = time.perf_counter() - start
            return {
                "mb_s": mb_s(size, seconds),
                "rss_growth_mb": rss.growth_mb,
                "source": store.last_source,
            }

    print(json.dumps(trio.run(move)))


def _connected_pair(work: Path) -> tuple[IpfsNode, IpfsNode]:
    from devnet.ipfs import connect_nodes, start_ipfs

    serving = start_ipfs(work / "node-a")
    try:
        fetching = start_ipfs(work / "node-b")
    except BaseException:
        serving.stop()
        raise
    connect_nodes(fetching.api_url, [serving.swarm_addr])
    return serving, fetching


async def _add(api: str, path: Path) -> tuple[str, float]:
    async with KuboContentStore(api, timeout=300) as store:
        start = time.perf_counter()
        cid = await store.add_file(path)
        return cid, time.perf_counter() - start


async def _bitswap_get(api: str, peer: str, cid: str, dest: Path, size: int) -> float:
    async with KuboContentStore(api, timeout=300, peers=[peer]) as store:
        start = time.perf_counter()
        await store.get(cid, dest, max_size=size)
        return time.perf_counter() - start


async def _resume_through_restart(
    serving: IpfsNode, fetching: IpfsNode, cid: str, size: int
) -> dict[str, Any]:
    """Read ``cid`` via ``fetching`` with ``serving``'s gateway first; restart ``serving``
    a third of the way in. True when every byte arrived and verified."""
    got = 0
    restarted = False
    start = time.perf_counter()
    async with KuboContentStore(
        fetching.api_url,
        timeout=10,
        peers=[serving.swarm_addr],
        gateways=[serving.gateway_url],
        resume_pause_s=1.0,
    ) as store:
        try:
            async for piece in store.cat(cid, max_size=size):
                got += len(piece)
                if not restarted and got >= size // 3:
                    restarted = True
                    await trio.to_thread.run_sync(serving.restart)
        except ContentError as exc:
            print(f"restart resume failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return {"restart_resume_ok": False, "restart_resumed": store.resumed}
        return {
            "restart_resume_ok": restarted and got == size,
            "restart_resumed": store.resumed,
            "restart_transfer_s": round(time.perf_counter() - start, 1),
        }


def cross_node(work: Path, size: int) -> dict[str, Any]:
    src = work / "cross.bin"
    figures: dict[str, Any] = {"cross_node_mib": size // MIB}
    serving, fetching = _connected_pair(work)
    try:
        write_random(src, size)
        cid, add_s = trio.run(_add, serving.api_url, src)
        figures["cross_node_local_add_mb_s"] = mb_s(size, add_s)
        # The market's path first (in a child, for its RSS): B never stores the blocks.
        dest = work / "cross.out"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.content",
                "--cross-probe",
                fetching.api_url,
                serving.gateway_url,
                cid,
                str(dest),
                str(size),
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if done.returncode != 0:
            raise SystemExit(f"cross-node probe failed: {done.stderr[-2000:]}")
        probe = json.loads(done.stdout.strip().splitlines()[-1])
        dest.unlink(missing_ok=True)
        if probe["source"] != serving.gateway_url:
            raise SystemExit(f"cross-node probe read from {probe['source']}, not A's gateway")
        figures["cross_node_mb_s"] = probe["mb_s"]
        figures["cross_node_rss_growth_mb"] = probe["rss_growth_mb"]
        seconds = trio.run(_bitswap_get, fetching.api_url, serving.swarm_addr, cid, dest, size)
        dest.unlink(missing_ok=True)
        figures["cross_node_bitswap_mb_s"] = mb_s(size, seconds)
        figures["cross_node_vs_local_add"] = round(
            figures["cross_node_mb_s"] / figures["cross_node_local_add_mb_s"], 2
        )
        figures["cross_node_vs_bitswap"] = round(
            figures["cross_node_mb_s"] / figures["cross_node_bitswap_mb_s"], 1
        )
        # Fresh content for the restart: B holds none of it.
        write_random(src, size)
        cid, _ = trio.run(_add, serving.api_url, src)
        figures.update(trio.run(_resume_through_restart, serving, fetching, cid, size))
    finally:
        src.unlink(missing_ok=True)
        fetching.stop()
        serving.stop()
    return figures


async def input_cache(api: str, work: Path, size: int) -> dict[str, Any]:
    """A provider's job input fetched twice through ``fetch_inputs`` with its CID cache:
    the first time from IPFS (then kept), the second from the cache (hashed again first)."""
    from provider_node.inputcache import InputCache
    from provider_node.workdir import fetch_inputs

    src = work / "input.bin"
    write_random(src, size)
    cache = InputCache(work / "input-cache", 4 * size)
    async with KuboContentStore(api, timeout=300) as store:
        cid = await store.add_file(src)
        timings = []
        for run in ("miss", "hit"):
            start = time.perf_counter()
            await fetch_inputs(store, {"data": cid}, work / f"run-{run}", 2 * size, cache=cache)
            timings.append(time.perf_counter() - start)
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)
    miss, hit = timings
    return {
        "input_cache_mib": size // MIB,
        "input_fetch_s": round(miss, 3),
        "input_cache_hit_s": round(hit, 3),
        "input_cache_hit_mb_s": round(mb_s(size, hit), 1),
        "input_cache_speedup": round(miss / hit, 2),
    }


def print_table(figures: dict[str, Any]) -> None:
    rows = [
        ("CID computation (pure Python)", "cid_mb_s", "MB/s"),
        ("daemon add, plain httpx", "daemon_add_mb_s", "MB/s"),
        ("client add (with local CID check)", "client_add_mb_s", "MB/s"),
        ("daemon cat, plain httpx", "daemon_cat_mb_s", "MB/s"),
        ("client cat (verified stream)", "client_cat_mb_s", "MB/s"),
        ("client get (verified, to disk)", "client_get_mb_s", "MB/s"),
    ]
    rows = [row for row in rows if row[1] in figures]  # --cross-only has none of these
    rows += [(key.replace("_", " "), key, "") for key in figures if key.startswith("artifact_")]
    rows += [
        (key.replace("_", " "), key, "")
        for key in figures
        if key.startswith(("cross_node_", "restart_", "input_"))
    ]
    if "size_mib" in figures:
        print(f"content store on {figures.get('daemon', '?')}, {figures['size_mib']} MiB file")
    for label, key, unit in rows:
        print(f"  {label:<44} {figures[key]:>10} {unit}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    ap.add_argument("--api", help="use this daemon (http://host:port) instead of starting one")
    ap.add_argument("--size-mib", type=int, default=100)
    ap.add_argument("--artifact-mib", type=int, default=1024)
    ap.add_argument("--cross-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small sizes (16/64/32 MiB), one round")
    ap.add_argument(
        "--cross-only", action="store_true", help="only the cross-node figures (two fresh daemons)"
    )
    ap.add_argument("--rss-probe", nargs=3, metavar=("API", "SRC", "DEST"), help=argparse.SUPPRESS)
    ap.add_argument("--cross-probe", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_probe:
        api, src, dest = args.rss_probe
        rss_probe(api, Path(src), Path(dest))
        return
    if args.cross_probe:
        api, gateway, cid, dest, size = args.cross_probe
        cross_probe(api, gateway, cid, Path(dest), int(size))
        return
    if args.quick:
        args.size_mib, args.artifact_mib, args.cross_mib, args.rounds = 16, 64, 32, 1

    with tempfile.TemporaryDirectory(prefix="bench-content-") as tmp:
        work = Path(tmp)
        if args.cross_only:
            figures = cross_node(work, args.cross_mib * MIB)
            print_table(figures)
            if args.json:
                print(json.dumps(figures))
            return
        node = None
        api = args.api
        if api is None:
            from devnet.ipfs import start_ipfs

            node = start_ipfs(work / "ipfs")
            api = node.api_url
        try:
            figures = trio.run(throughput, api, work, args.size_mib * MIB, args.rounds)
            figures.update(artifact(api, work, args.artifact_mib * MIB))
            figures.update(trio.run(input_cache, api, work, args.size_mib * MIB))
        finally:
            if node is not None:
                node.stop()
        if args.api is None:
            figures.update(cross_node(work, args.cross_mib * MIB))
    print_table(figures)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
