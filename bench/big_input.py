"""A multi-GiB input through a whole job on the devnet, twice.

Writes a seeded file of ``--gib`` GiB (2 by default) piece by piece, never whole in
memory, and submits a job through the wallet's own submit path whose code streams that
input and writes its SHA-256 to its outputs. The same job is submitted a second time: the
providers should take the input from their CID caches instead of fetching it again. The
job runs on two providers (redundancy 2: a single seat needs another operator to check it),
so each of them fetches the input once. Reports:

- ``submit_upload_s``: the first ``jobs.submit`` (the wallet adds the input to its own
  IPFS node, then creates the job on chain); ``wallet_rss_growth_mb``: this process's
  peak RSS growth over that submit (the submitting process is this one).
- ``provider_fetch_s`` / ``provider_cached_s``: the slowest provider's seconds to place the
  input for the first and for the second job, read from the providers' logs
  (``provider_node.workdir`` logs each input with ``fetched`` or ``cache``);
  ``second_job_cache_hit``: every provider took it from its cache the second time.
- ``provider_rss_growth_mb``: the largest peak RSS growth of a provider daemon over both
  jobs, sampled from the PIDs in the devnet state file (the job's sandbox is another
  process and does not count). The baseline is taken once the coordinator has finished
  the benchmark challenges it sends every provider that joins (``join_challenges_s`` after
  the bench starts): a CPU provider computes them in its daemon, with matrices of several
  hundred MB, and that work is no part of moving the input.
- ``digest_ok``: both results' digests equal the local file's SHA-256, recomputed here.
- With ``--restart-serving``: the requester's IPFS node (the one serving the input) is
  restarted once a provider has downloaded a third of the input for the first job
  (watched in the providers' work directories, where a verified download grows under a
  ``.partial-`` name). ``restart_resume_ok``: the node was restarted mid-download and the
  first job still settled with the right digest; ``restart_at_mib``: how far that
  provider had got; ``serving_restart_s``: until the restarted node's API answered.

It brings up its own devnet with two providers whose ``PROVIDER_MAX_INPUT_BYTES`` admits the
input, unless ``--state`` names a running devnet (whose providers must admit it). Needs
about five times the input's size free on disk (the local file, the wallet's IPFS node,
each provider's copy); everything it writes is removed at the end. MB is 10^6 bytes.

    python -m bench.big_input [--gib 2] [--state FILE] [--restart-serving] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.content import RssGrowth
from bench.devnet_ready import wait_for_join_challenges
from devnet import network
from devnet.network import restart_ipfs_node
from protocol.devnet_state import load_state
from protocol.identity import Identity
from provider_node.workdir import INPUT_FETCHED, INPUT_FROM_CACHE
from wallet import jobs
from wallet.settings import WalletSettings

GIB = 1 << 30
PIECE = 4 << 20
SEED = 16
DATA_INPUT = "data"
DATA_FILE = "big.bin"
DIGEST_FILE = "sha256.txt"
SETTLE_TIMEOUT_S = 1800.0
DISK_FACTOR = 5
RESTART_AT = 1 / 3
"""The share of the input a provider has downloaded when ``--restart-serving`` restarts
the serving node."""

JOB_CODE = f'''"""Streams the input {DATA_INPUT!r} and writes its SHA-256."""
import hashlib
import os
from pathlib import Path

inputs = Path(os.environ.get("GPUMARKET_INPUT_DIR", "inputs"))
out = Path(os.environ.get("GPUMARKET_OUTPUT_DIR", "outputs"))
digest = hashlib.sha256()
size = 0
with open(inputs / "{DATA_INPUT}" / "{DATA_FILE}", "rb") as handle:
    while piece := handle.read(1 << 20):
        digest.update(piece)
        size += len(piece)
(out / "{DIGEST_FILE}").write_text(digest.hexdigest() + "\\n")
print(f"read {{size}} bytes, sha256 {{digest.hexdigest()}}")
'''

JOB_SPEC = f"""name: big-input
runtime: {{kind: torch, entrypoint: main.py}}
inputs:
  - {{name: code, path: ./code}}
  - {{name: {DATA_INPUT}, path: ./{DATA_INPUT}}}
resources: {{gpus: 0}}
verification: {{redundancy: 2, compare: exact}}
price: {{max_per_provider: "5"}}
timeout: 30m
max_output: 1MiB
"""

INPUT_LINE = re.compile(
    rf"input {DATA_INPUT} (\S+): ({INPUT_FETCHED}|{INPUT_FROM_CACHE}), (\d+) bytes in ([\d.]+) s"
)


def write_seeded(path: Path, size: int, seed: int = SEED) -> None:
    """``size`` pseudo-random bytes from ``seed``, written a piece at a time."""
    rng = random.Random(seed)
    with open(path, "wb") as handle:
        left = size
        while left:
            n = min(PIECE, left)
            handle.write(rng.randbytes(n))
            left -= n


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def make_job(root: Path, size: int) -> Path:
    """The job directory (spec, code, the seeded input); returns the spec's path."""
    (root / "code").mkdir(parents=True)
    (root / "code" / "main.py").write_text(JOB_CODE)
    (root / DATA_INPUT).mkdir()
    write_seeded(root / DATA_INPUT / DATA_FILE, size)
    spec = root / "job.yaml"
    spec.write_text(JOB_SPEC)
    return spec


def input_placements(log_text: str) -> list[tuple[str, str, int, float]]:
    """(cid, ``fetched`` or ``cache``, bytes, seconds) for each time a provider placed the
    bench's data input, in the order of its log."""
    return [
        (m.group(1), m.group(2), int(m.group(3)), float(m.group(4)))
        for m in INPUT_LINE.finditer(log_text)
    ]


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PidsRss:
    """The peak RSS growth of each of ``pids`` over a block (sampled every 100 ms)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def __enter__(self) -> PidsRss:
        self.baseline_kb = {p: _rss_kb(p) for p in self.pids}
        self.peak_kb = dict(self.baseline_kb)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.1):
            for p in self.pids:
                self.peak_kb[p] = max(self.peak_kb[p], _rss_kb(p))

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        """The largest growth of any one of them."""
        grown = [self.peak_kb[p] - self.baseline_kb[p] for p in self.pids]
        return round(max(grown, default=0) * 1024 / 1e6, 1)


def partial_bytes(work_dir: Path) -> int:
    """The most bytes of the data file any download in progress under ``work_dir`` holds
    (a verified download is written under a ``.partial-`` name until it is whole)."""
    grown = [
        path.stat().st_size
        for path in work_dir.rglob(DATA_FILE)
        if ".partial-" in path.parent.name and path.is_file()
    ]
    return max(grown, default=0)


class RestartMidFetch:
    """Restarts the requester's IPFS node of the devnet in ``state_file`` (once) when a
    download under one of ``work_dirs`` has reached ``at_bytes``; polled every 50 ms."""

    def __init__(self, state_file: Path, work_dirs: list[Path], at_bytes: int) -> None:
        self.state_file = state_file
        self.work_dirs = work_dirs
        self.at_bytes = at_bytes
        self.restarted_at: int | None = None
        self.restart_s: float | None = None
        self.error: str | None = None

    def __enter__(self) -> RestartMidFetch:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._done.wait(0.05):
            reached = max((partial_bytes(d) for d in self.work_dirs), default=0)
            if reached < self.at_bytes:
                continue
            started = time.monotonic()
            try:
                restart_ipfs_node(self.state_file, "requester")
            except Exception as exc:  # reported in the figures, not lost in a thread
                self.error = f"{type(exc).__name__}: {exc}"
            else:
                self.restarted_at = reached
                self.restart_s = time.monotonic() - started
            return

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


def run_job(settings: WalletSettings, identity: Identity, spec: Path, out: Path) -> str:
    """Submit, wait for the verified result, download it; returns the digest it holds."""
    submitted = jobs.submit(settings, identity, spec)
    view = jobs.follow(settings, submitted.job_id, lambda _: None, timeout=SETTLE_TIMEOUT_S)
    if view.state != "settled":
        raise SystemExit(f"job {view.job_id} ended {view.state}: {view.failure}")
    jobs.fetch_result(settings, submitted.job_id, out)
    return (out / DIGEST_FILE).read_text().strip()


def measure(
    state_file: Path,
    size: int,
    work: Path,
    say: Callable[[str], None],
    restart_serving: bool = False,
) -> dict[str, Any]:
    state = load_state(state_file)
    settings = WalletSettings(devnet_state=state_file).with_devnet()
    key = next(a.private_key for a in state.accounts if a.role == "requester")
    identity = Identity.from_private_key(key)
    providers = [p for p in state.processes if p.name.startswith("provider-")]
    waited = wait_for_join_challenges(settings, len(providers), say)
    say(f"providers challenged by the coordinator after {waited:.1f}s")

    t0 = time.monotonic()
    spec = make_job(work / "job", size)
    say(f"wrote {size / GIB:.2f} GiB in {time.monotonic() - t0:.1f}s")
    logs_before = {p.log: Path(p.log).stat().st_size for p in providers}

    digests = []
    work_dirs = [Path(p.workdir) for p in providers]
    restarter = RestartMidFetch(state_file, work_dirs, int(size * RESTART_AT))
    with PidsRss([p.pid for p in providers]) as provider_rss:
        t0 = time.monotonic()
        with RssGrowth() as wallet_rss:
            submitted = jobs.submit(settings, identity, spec)
        submit_s = time.monotonic() - t0
        say(f"submitted in {submit_s:.1f}s")
        with restarter if restart_serving else contextlib.nullcontext():
            view = jobs.follow(settings, submitted.job_id, lambda _: None, timeout=SETTLE_TIMEOUT_S)
        if restarter.restarted_at is not None:
            say(
                f"restarted the requester's IPFS node at {restarter.restarted_at >> 20} MiB "
                f"of a download ({restarter.restart_s:.1f}s)"
            )
        if restarter.error is not None:
            say(f"restarting the requester's IPFS node failed: {restarter.error}")
        if view.state != "settled":
            raise SystemExit(f"job {view.job_id} ended {view.state}")
        jobs.fetch_result(settings, submitted.job_id, work / "result-1")
        digests.append((work / "result-1" / DIGEST_FILE).read_text().strip())
        first_s = time.monotonic() - t0
        say(f"first job settled in {first_s:.1f}s")
        t0 = time.monotonic()
        digests.append(run_job(settings, identity, spec, work / "result-2"))
        second_s = time.monotonic() - t0
        say(f"second job settled in {second_s:.1f}s")

    placed: dict[str, list[tuple[str, str, int, float]]] = {}
    for p in providers:
        with open(p.log, "rb") as handle:
            handle.seek(logs_before[p.log])
            placed[p.name] = input_placements(handle.read().decode(errors="replace"))
    t0 = time.monotonic()
    local = sha256_file(spec.parent / DATA_INPUT / DATA_FILE)
    say(f"local sha256 in {time.monotonic() - t0:.1f}s")
    ran = {name: got for name, got in placed.items() if got}
    fetched = [got[0][3] for got in ran.values() if got[0][1] == INPUT_FETCHED]
    cached = [got[1][3] for got in ran.values() if got[1:2] and got[1][1] == INPUT_FROM_CACHE]
    figures: dict[str, Any] = {
        "input_gib": round(size / GIB, 3),
        "input_cid": submitted.input_cids[DATA_INPUT],
        "submit_upload_s": round(submit_s, 1),
        "upload_mb_s": round(size / 1e6 / submit_s, 1),
        "wallet_rss_growth_mb": wallet_rss.growth_mb,
        "first_job_s": round(first_s, 1),
        "second_job_s": round(second_s, 1),
        "provider_fetch_s": round(max(fetched), 1) if fetched else None,
        "provider_fetch_mb_s": round(size / 1e6 / max(fetched), 1) if fetched else None,
        "provider_cached_s": round(max(cached), 1) if cached else None,
        "input_placements": {name: [how for _, how, _, _ in got] for name, got in ran.items()},
        "second_job_cache_hit": bool(ran) and len(cached) == len(ran),
        "provider_rss_growth_mb": provider_rss.growth_mb,
        "join_challenges_s": round(waited, 1),
        "digest_ok": digests == [local, local],
    }
    if restart_serving:
        restarted = restarter.restarted_at
        figures["restart_resume_ok"] = restarted is not None and digests[0] == local
        figures["restart_at_mib"] = None if restarted is None else restarted >> 20
        figures["serving_restart_s"] = (
            None if restarter.restart_s is None else round(restarter.restart_s, 1)
        )
    return figures


def render(figures: dict[str, Any], say: Callable[[str], None]) -> None:
    say(f"{'figure':<24} value")
    for key, value in figures.items():
        say(f"{key:<24} {value}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0, help="Input size in GiB.")
    parser.add_argument("--state", type=Path, help="Use a running devnet's state file.")
    parser.add_argument(
        "--restart-serving",
        action="store_true",
        help="Restart the requester's IPFS node while a provider downloads the input.",
    )
    parser.add_argument("--json", action="store_true", help="End with one JSON line.")
    args = parser.parse_args(argv)
    size = int(args.gib * GIB)

    def say(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench-big-input-"))
    free = shutil.disk_usage(work).free
    if free < DISK_FACTOR * size:
        shutil.rmtree(work)
        raise SystemExit(
            f"{free / GIB:.1f} GiB free in {work.parent}, the bench needs about "
            f"{DISK_FACTOR * size / GIB:.1f}: pass a smaller --gib"
        )
    own = args.state is None
    state_file: Path = args.state or work / "state.json"
    try:
        if own:
            started = time.monotonic()
            say("devnet up with two providers ...")
            network.up(
                state_file,
                providers=2,
                progress=say,
                provider_settings={"PROVIDER_MAX_INPUT_BYTES": str(size + GIB)},
            )
            say(f"devnet ready in {time.monotonic() - started:.1f}s")
        figures = measure(state_file, size, work, say, args.restart_serving)
    finally:
        if own and state_file.exists():
            root = load_state(state_file).root
            network.down(state_file)
            if root:
                shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    render(figures, say)
    if args.json:
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
