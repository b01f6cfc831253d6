"""End-to-end benchmark: the whole market on its own devnet.

1. Latency: the seeded matmul (redundancy 2) from submit to a verified result on disk,
   ``--runs`` times one after another (p50, target at most 3 s).
2. Load: ``--jobs`` matmul jobs submitted at once by ``--requesters`` requesters over
   ``--providers`` providers; every job must settle with both providers paid. Reports
   throughput, p50/p95 latency (submit to settled) and, per job, where its time went by
   the coordinator's own phase timings (``GET /jobs/{id}`` ``phases``, its clock):
   queueing (known to the coordinator -> first seat chosen), the coordinator's time (its
   code and its chain transactions: offers and the assign transaction, delivery, the
   reveal round, the settle transaction) and the providers' time (delivered -> every seat
   committed: sandbox start, the run, the commitment).

Timing starts once the coordinator has judged every provider's join challenges
(``join_challenges_s``: how long that took), so the figures are the devnet's steady state.

Usage: ``python -m bench.e2e [--providers 5] [--runs 10] [--jobs 50] [--json]``
(``--state FILE`` measures a devnet that is already up instead of starting one;
``--warm-sandboxes N`` starts the providers with ``PROVIDER_WARM_SANDBOXES=N`` instead of
the provider's default, 1).
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

from bench.devnet_ready import wait_for_join_challenges
from devnet import network
from devnet.process import spawn
from devnet.services import provider_env, wait_provider
from protocol.devnet_state import DevAccount, load_state, save_state
from protocol.identity import Identity
from protocol.ids import job_id_hex
from provider_node.settings import ProviderSettings
from wallet import jobs
from wallet.settings import WalletSettings

SPEC = Path(__file__).resolve().parents[1] / "examples" / "matmul" / "job.yaml"
DEVNET_PROVIDER_ROLES = 3
SETTLE_TIMEOUT_S = 900.0
SETTLE_S_PER_JOB = 30.0
"""The concurrent run waits at least this long per job (two CPU providers per job on a
shared 2-core machine get through about two jobs a minute at worst)."""


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# ---------------------------------------------------------------------- devnet
def add_providers(state_file: Path, count: int, settings: dict[str, str] | None = None) -> None:
    """Start providers beyond the devnet's provider roles, each with a fresh funded key
    (``settings``: extra ``PROVIDER_*`` variables, as the devnet's own providers got)."""
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
        env.update(settings or {})
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
    ("submit", "start", "queued"),
    ("match", "queued", "matched"),
    ("offer+assign tx", "matched", "assign_tx_mined"),
    ("deliver", "assign_tx_mined", "delivered"),
    ("provider run+commit", "delivered", "all_committed"),
    ("reveal", "all_committed", "all_revealed"),
    ("settle tx", "all_revealed", "settle_tx_mined"),
    ("notice+fetch", "settle_tx_mined", "fetched"),
)
"""(name, from, to): ``start`` and ``fetched`` are the requester's clock, the rest the
coordinator's phase timings (one machine: one clock)."""
COORDINATOR_PHASES = ("offer+assign tx", "deliver", "reveal", "settle tx")
QUEUE_PHASES = ("match",)
PROVIDER_PHASES = ("provider run+commit",)


def spans(marks: dict[str, float], names: tuple[str, ...]) -> float | None:
    """Seconds spent in the phases ``names``; None when a phase was not reached."""
    total = 0.0
    for name, a, b in PHASES:
        if name in names:
            if a not in marks or b not in marks:
                return None
            total += marks[b] - marks[a]
    return total


def one_job(settings: WalletSettings, identity: Identity, out: Path) -> dict[str, float]:
    """Submit -> follow -> verified download; wall times of each step (epoch seconds)."""
    marks = {"start": time.time()}
    submitted = jobs.submit(settings, identity, SPEC)
    view = jobs.follow(settings, submitted.job_id, lambda _: None, timeout=SETTLE_TIMEOUT_S)
    if view.state != "settled":
        raise RuntimeError(f"job {view.job_id} ended {view.state}")
    jobs.fetch_result(settings, submitted.job_id, out)
    marks["fetched"] = time.time()
    view = httpx.get(
        f"{settings.need('coordinator_url')}/jobs/{job_id_hex(submitted.job_id)}", timeout=30
    ).json()
    marks.update(view["phases"])
    return marks


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


POLL_S = 2.0
"""How often the concurrent run's states are read: one ``GET /jobs`` for all of them, so
watching the run does not load the coordinator it measures."""


def wait_all(url: str, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """The full views (phases included) of the jobs in ``ids`` that ended in time."""
    deadline = time.monotonic() + timeout
    wanted = set(ids)
    ended: set[str] = set()
    with httpx.Client(timeout=60) as client:
        while len(ended) < len(wanted) and time.monotonic() < deadline:
            listed = client.get(f"{url}/jobs", params={"limit": 1000}).json()["jobs"]
            ended |= {
                v["job_id"]
                for v in listed
                if v["job_id"] in wanted and v.get("state") in jobs.TERMINAL
            }
            time.sleep(POLL_S)
        return {job_id: client.get(f"{url}/jobs/{job_id}").json() for job_id in sorted(ended)}


def measure(state_file: Path, runs: int, total: int, requester_count: int) -> dict[str, Any]:
    state = load_state(state_file)
    settings = settings_for(state_file)
    url = settings.need("coordinator_url")
    keys = [a.private_key for a in state.accounts if a.role == "requester"][:requester_count]
    requesters = [Identity.from_private_key(k) for k in keys]

    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        marks = [one_job(settings, requesters[0], Path(tmp) / f"run-{i}") for i in range(runs)]
    latencies = [m["fetched"] - m["start"] for m in marks]
    phases = {
        f"phase_{name}_p50_ms": 1000 * statistics.median(m[b] - m[a] for m in marks)
        for name, a, b in PHASES
        if marks and all(a in m and b in m for m in marks)
    }

    started = time.time()
    submitted, errors = concurrent(settings, requesters, total)
    final = wait_all(
        url, [j for j, _ in submitted], max(SETTLE_TIMEOUT_S, SETTLE_S_PER_JOB * total)
    )
    settled = {j: v for j, v in final.items() if v["state"] == "settled"}
    correct = {
        j
        for j, v in settled.items()
        if sum(1 for p in v["providers"] if p["outcome"] == "paid") == 2
        and len({p["result_cid"] for p in v["providers"] if p["outcome"] == "paid"}) == 1
    }
    timings = {j: dict(settled[j]["phases"]) for j in settled}
    submit_at = dict(submitted)
    load_latency = [timings[j]["settle_tx_mined"] - submit_at[j] for j in settled]
    last = max((timings[j]["settle_tx_mined"] for j in settled), default=started)

    def load_p(names: tuple[str, ...], q: float) -> float:
        found = [t for t in (spans(timings[j], names) for j in settled) if t is not None]
        return 1000 * percentile(found, q)

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
        "submit_to_result_p50_s": percentile(latencies, 50),
        "submit_to_result_min_s": min(latencies, default=float("nan")),
        "submit_to_result_max_s": max(latencies, default=float("nan")),
        **phases,
        "coordinator_time_p50_ms": 1000 * median_of(marks, COORDINATOR_PHASES),
        "queue_time_p50_ms": 1000 * median_of(marks, QUEUE_PHASES),
        "provider_time_p50_ms": 1000 * median_of(marks, PROVIDER_PHASES),
        f"concurrent{total}_jobs": total,
        f"concurrent{total}_submitted": len(submitted),
        f"concurrent{total}_settled": len(correct),
        f"concurrent{total}_outcomes": outcomes,
        f"concurrent{total}_failure_reasons": reasons,
        f"concurrent{total}_unfinished": len(submitted) - len(final),
        f"concurrent{total}_submit_errors": errors[:5],
        f"concurrent{total}_p95_s": percentile(load_latency, 95),
        f"concurrent{total}_p50_s": percentile(load_latency, 50),
        f"concurrent{total}_coordinator_time_p50_ms": load_p(COORDINATOR_PHASES, 50),
        f"concurrent{total}_coordinator_time_p95_ms": load_p(COORDINATOR_PHASES, 95),
        f"concurrent{total}_queue_time_p50_ms": load_p(QUEUE_PHASES, 50),
        f"concurrent{total}_provider_time_p50_ms": load_p(PROVIDER_PHASES, 50),
        "throughput_jobs_per_min": 60 * len(settled) / max(1e-9, last - started),
    }


def median_of(marks: list[dict[str, float]], names: tuple[str, ...]) -> float:
    found = [t for t in (spans(m, names) for m in marks) if t is not None]
    return statistics.median(found) if found else float("nan")


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
    parser.add_argument(
        "--warm-sandboxes",
        type=int,
        choices=range(0, 9),
        metavar="N",
        help="Warm sandboxes each provider keeps (PROVIDER_WARM_SANDBOXES; default: the "
        "provider's own default, 1). Jobs one after another reach the same two best-placed "
        "providers, whose one slot may still be warming.",
    )
    parser.add_argument("--json", action="store_true", help="End with one JSON line.")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    own = args.state is None
    if not own and args.warm_sandboxes is not None:
        parser.error("--warm-sandboxes applies to a devnet the bench starts, not to --state")
    provider_settings = (
        {} if args.warm_sandboxes is None else {"PROVIDER_WARM_SANDBOXES": str(args.warm_sandboxes)}
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-devnet-"))
    state_file: Path = args.state or workdir / "state.json"
    try:
        if own:
            started = time.monotonic()
            say(f"devnet up with {args.providers} providers ...")
            network.up(
                state_file,
                providers=DEVNET_PROVIDER_ROLES,
                progress=say,
                provider_settings=provider_settings,
            )
            add_providers(state_file, args.providers - DEVNET_PROVIDER_ROLES, provider_settings)
            say(f"devnet ready in {time.monotonic() - started:.1f}s")
        url = load_state(state_file).coordinator_url
        assert url is not None
        wait_book(url, args.providers)
        # Steady state: the coordinator's join challenges (seconds of CPU per provider on
        # these cores) are over before anything is timed; the wait is reported.
        waited = wait_for_join_challenges(settings_for(state_file), args.providers, say)
        figures = measure(state_file, args.runs, args.jobs, args.requesters)
        figures["join_challenges_s"] = round(waited, 1)
        if own:
            default = ProviderSettings.model_fields["warm_sandboxes"].default
            figures["warm_sandboxes"] = (
                default if args.warm_sandboxes is None else args.warm_sandboxes
            )
    finally:
        if own and state_file.exists():
            network.down(state_file)
    render(figures, say)
    if args.json:
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
