"""End-to-end benchmark: the whole market on its own devnet.

1. Latency: the seeded matmul (redundancy 2) from submit to a verified result on disk,
   ``--runs`` times one after another (p50, target under 5 s).
2. Load: ``--jobs`` matmul jobs submitted at once by ``--requesters`` requesters over
   ``--providers`` providers; every job must settle with both providers paid. Reports
   throughput, p95 latency (submit to settled) and the coordinator's overhead per job:
   its job events' span minus the providers' run (running -> committed) and minus chain
   time (the assign and settle transactions, at the devnet's measured receipt latency).

Usage: ``python -m bench.e2e [--providers 5] [--runs 10] [--jobs 50] [--json]``
(``--state FILE`` measures a devnet that is already up instead of starting one).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

from contracts.chain import Web3Chain
from contracts.models import Deployment
from devnet import network
from devnet.process import spawn
from devnet.services import provider_env, wait_provider
from protocol.devnet_state import DevAccount, DevnetState, load_state, save_state
from protocol.identity import Identity
from protocol.ids import job_id_hex
from wallet import jobs
from wallet.settings import WalletSettings

SPEC = Path(__file__).resolve().parents[1] / "examples" / "matmul" / "job.yaml"
DEVNET_PROVIDER_ROLES = 3
SETTLE_TIMEOUT_S = 900.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# ---------------------------------------------------------------------- devnet
def add_providers(state_file: Path, count: int) -> None:
    """Start providers beyond the devnet's provider roles, each with a fresh funded key."""
    state = load_state(state_file)
    root = state.root
    assert root is not None
    pending = []
    for index in range(DEVNET_PROVIDER_ROLES, DEVNET_PROVIDER_ROLES + count):
        key = Account.create()
        network.fund(state_file, key.address, tokens="1000", eth=10)
        account = DevAccount(
            address=key.address, private_key="0x" + bytes(key.key).hex(), role="provider"
        )
        workdir, env = provider_env(state, Path(root), account, index, "bwrap")
        record = spawn(
            f"provider-{index}",
            [sys.executable, "-m", "gpumarket_cli", "provider", "run"],
            log=workdir / "provider.log",
            workdir=workdir,
            env=env,
        )
        state = load_state(state_file)
        state.processes.append(record)
        save_state(state_file, state)
        pending.append((record, Path(env["PROVIDER_WORK_DIR"]) / "provider.json"))
    for record, ready in pending:
        wait_provider(record, ready)


def wait_book(url: str, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(httpx.get(url + "/providers", timeout=10).json()["providers"]) >= count:
            return
        time.sleep(0.5)
    raise SystemExit(f"the coordinator's book never held {count} providers")


# ---------------------------------------------------------------------- measuring
def settings_for(state_file: Path) -> WalletSettings:
    return WalletSettings(devnet_state=state_file).with_devnet()


PHASES = (
    ("submit", "start", "created"),
    ("match+assign tx", "created", "assigned"),
    ("deliver", "assigned", "running"),
    ("provider run+commit", "running", "committed"),
    ("reveal", "committed", "revealed"),
    ("settle", "revealed", "settled"),
    ("notice+fetch", "settled", "fetched"),
)


def one_job(settings: WalletSettings, identity: Identity, out: Path) -> dict[str, float]:
    """Submit -> follow -> verified download; wall times of each step (epoch seconds)."""
    marks = {"start": time.time()}
    submitted = jobs.submit(settings, identity, SPEC)
    view = jobs.follow(settings, submitted.job_id, lambda _: None, timeout=SETTLE_TIMEOUT_S)
    if view["state"] != "settled":
        raise RuntimeError(f"job {view['job_id']} ended {view['state']}")
    jobs.fetch_result(settings, submitted.job_id, out)
    marks["fetched"] = time.time()
    marks.update(events(settings.need("coordinator_url"), job_id_hex(submitted.job_id)))
    return marks


def tx_latency_s(state: DevnetState, key: str, samples: int = 10) -> float:
    """Median wall time of one receipted transaction on this devnet."""
    assert state.rpc_url is not None and state.chain_id is not None
    chain = Web3Chain(
        state.rpc_url, Deployment.from_addresses(state.chain_id, state.contracts), key
    )
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        chain.approve(state.contracts["market"], 0)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def events(url: str, job_id: str) -> dict[str, float]:
    """First time the coordinator recorded each state of ``job_id``."""
    seen: dict[str, float] = {}
    with httpx.stream("GET", f"{url}/jobs/{job_id}/events", timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                seen.setdefault(event["state"], float(event["at"]))
    return seen


def overhead_s(seen: dict[str, float], chain_s: float) -> float | None:
    needed = ("created", "running", "committed", "settled")
    if not all(k in seen for k in needed):
        return None
    run = seen["committed"] - seen["running"]
    return (seen["settled"] - seen["created"]) - run - 2 * chain_s


def concurrent(
    settings: WalletSettings, requesters: list[Identity], total: int
) -> tuple[list[tuple[str, float]], list[str]]:
    """Submit ``total`` jobs at once (each requester in its own thread, one after
    another); returns (job id, submit wall time) pairs and submission errors."""
    submitted: list[tuple[str, float]] = []
    errors: list[str] = []
    lock = threading.Lock()
    share = [
        total // len(requesters) + (i < total % len(requesters)) for i in range(len(requesters))
    ]

    def run(identity: Identity, count: int) -> None:
        for _ in range(count):
            at = time.time()
            try:
                done = jobs.submit(settings, identity, SPEC)
            except Exception as exc:  # reported, not fatal: the count says how many settled
                with lock:
                    errors.append(f"{identity.address}: {exc}")
                continue
            with lock:
                submitted.append((job_id_hex(done.job_id), at))

    threads = [
        threading.Thread(target=run, args=(identity, count), name=f"requester-{i}")
        for i, (identity, count) in enumerate(zip(requesters, share, strict=True))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return submitted, errors


def wait_all(url: str, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    final: dict[str, dict[str, Any]] = {}
    with httpx.Client(timeout=10) as client:
        while len(final) < len(ids) and time.monotonic() < deadline:
            for job_id in ids:
                if job_id in final:
                    continue
                view = client.get(f"{url}/jobs/{job_id}").json()
                if view.get("state") in jobs.TERMINAL:
                    final[job_id] = view
            time.sleep(0.5)
    return final


def measure(state_file: Path, runs: int, total: int, requester_count: int) -> dict[str, Any]:
    state = load_state(state_file)
    settings = settings_for(state_file)
    url = settings.need("coordinator_url")
    keys = [a.private_key for a in state.accounts if a.role == "requester"][:requester_count]
    requesters = [Identity.from_private_key(k) for k in keys]
    chain_s = tx_latency_s(state, keys[0])

    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        marks = [one_job(settings, requesters[0], Path(tmp) / f"run-{i}") for i in range(runs)]
    latencies = [m["fetched"] - m["start"] for m in marks]
    phases = {
        f"phase_{name}_p50_ms": 1000 * statistics.median(m[b] - m[a] for m in marks)
        for name, a, b in PHASES
        if all(a in m and b in m for m in marks)
    }

    started = time.time()
    submitted, errors = concurrent(settings, requesters, total)
    final = wait_all(url, [j for j, _ in submitted], SETTLE_TIMEOUT_S)
    settled = {j: v for j, v in final.items() if v["state"] == "settled"}
    correct = {
        j
        for j, v in settled.items()
        if sum(1 for p in v["providers"] if p["outcome"] == "paid") == 2
        and len({p["result_cid"] for p in v["providers"] if p["outcome"] == "paid"}) == 1
    }
    timings = {j: events(url, j) for j in settled}
    submit_at = dict(submitted)
    load_latency = [timings[j]["settled"] - submit_at[j] for j in settled]
    last = max((timings[j]["settled"] for j in settled), default=started)
    overheads = [o for o in (overhead_s(timings[j], chain_s) for j in settled) if o is not None]
    outcomes: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for v in final.values():
        outcomes[v["state"]] = outcomes.get(v["state"], 0) + 1
        if v.get("failure"):
            reason = str(v["failure"].get("reason"))[:80]
            reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "providers": len(httpx.get(url + "/providers", timeout=10).json()["providers"]),
        "runs": runs,
        "submit_to_result_p50_s": statistics.median(latencies),
        "submit_to_result_min_s": min(latencies),
        "submit_to_result_max_s": max(latencies),
        **phases,
        "concurrent50_jobs": total,
        "concurrent50_submitted": len(submitted),
        "concurrent50_settled": len(correct),
        "concurrent50_outcomes": outcomes,
        "concurrent50_failure_reasons": reasons,
        "concurrent50_unfinished": len(submitted) - len(final),
        "concurrent50_submit_errors": errors[:5],
        "concurrent50_p95_s": percentile(load_latency, 95),
        "concurrent50_p50_s": percentile(load_latency, 50),
        "throughput_jobs_per_min": 60 * len(settled) / max(1e-9, last - started),
        "chain_tx_s": chain_s,
        "coordinator_overhead_p50_ms": 1000 * percentile(overheads, 50),
        "coordinator_overhead_p95_ms": 1000 * percentile(overheads, 95),
    }


def render(figures: dict[str, Any], say: Callable[[str], None]) -> None:
    say(f"{'figure':<34} value")
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        say(f"{key:<34} {shown}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=5, choices=range(3, 6))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--requesters", type=int, default=5, choices=range(1, 6))
    parser.add_argument("--state", type=Path, help="Use a running devnet's state file.")
    parser.add_argument("--json", action="store_true", help="End with one JSON line.")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    own = args.state is None
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-devnet-"))
    state_file: Path = args.state or workdir / "state.json"
    try:
        if own:
            started = time.monotonic()
            say(f"devnet up with {args.providers} providers ...")
            network.up(state_file, providers=DEVNET_PROVIDER_ROLES, progress=say)
            add_providers(state_file, args.providers - DEVNET_PROVIDER_ROLES)
            say(f"devnet ready in {time.monotonic() - started:.1f}s")
        url = load_state(state_file).coordinator_url
        assert url is not None
        wait_book(url, args.providers)
        figures = measure(state_file, args.runs, args.jobs, args.requesters)
    finally:
        if own and state_file.exists():
            network.down(state_file)
    render(figures, say)
    if args.json:
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
