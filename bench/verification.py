"""The economics of verification, measured on the real coordinator.

A market simulator: the coordinator's own driver, seating and spot checks
(``coordinator.lifecycle.seating``, ``proofs.policy.StakeAwarePolicy``), verdicts
(``coordinator.verification.verifier``), settlement (``coordinator.lifecycle.closing``,
``coordinator.chain.settlement``), chain watcher and sqlite store run against the
in-memory chain ``contracts.fake.FakeWorld`` (the contract's rules) with scripted
providers (``devnet.scripted_provider``) that sign everything for real (``devnet.harness``).
Nothing below is a formula: every figure is read back from the chain's balances or the
coordinator's store after the jobs ran.

Per strategy, one provider follows it among honest providers of the same fingerprint
(several operator groups, all staked, all established); a requester creates exact-compare
jobs with redundancy 1 (the policy decides spot checks). The strategy's provider is the
cheapest, so the matcher makes it the primary while its reputation holds. Its wealth on
the chain (claimable + stake + tokens) is read before and after every job: profit per
cheated job = the sum of those changes over the jobs it cheated on / cheats / its seat
price (what cheating earns when the work skipped is worth the seat's price; an honest job
then nets zero), reported with its standard error; profit per job = the whole change / jobs
it sat on / seat price. Detection trials reset the cheater's reputation to "established"
after each slash (a fresh provider with the same key) and count its cheats until the next
slash.

    python -m bench.verification [--json] [--quick] [--jobs N] [--trials N] [--seed S]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from contracts.errors import ContractError
from contracts.models import JobStatus
from coordinator.lifecycle.driver import JobDriver
from coordinator.store import JobRecord, ReputationRecord
from devnet.harness import RATE, STAKE, Harness, harness, identity
from devnet.scripted_provider import FakeProvider, ScriptedJob, Strategy
from proofs.reputation import Reputation
from protocol.eip712 import digest_to_cid
from protocol.ids import JobId, to_wei

RUNTIME_MS = 600_000  # every run takes the job's whole timeout: a seat earns its full price
HONEST_GROUPS = [1, 1, 2, 2, 3, 3]  # six honest providers in three operator groups
CHEATER_GROUP = 100
CHEATER_RATE = RATE * 9 // 10  # the cheapest: the matcher seats it first
NEWCOMER_RATE = RATE * 4 // 10
ESTABLISHED = (50, 0)  # seeded record (completed, slashed) of an established provider
MAX_STEPS = 200
DETECT_CAP = 100  # a detection trial gives up after this many cheats
TOP_UP = to_wei("900")  # extra stake for a cheater slashed in many trials
FEE = to_wei("0.10")
REQUESTER_FUNDS = to_wei("100000")


def honest_digest(job_id: bytes) -> bytes:
    """The job's correct result (jobs differ by id, so no result can be replayed)."""
    return hashlib.sha256(b"honest" + bytes(job_id)).digest()


def garbage(job_id: bytes, tag: bytes = b"lazy") -> bytes:
    return hashlib.sha256(tag + bytes(job_id)).digest()


# --- strategies -----------------------------------------------------------------------


@dataclass
class Ledger:
    """What a strategy did, job by job (filled in by the strategy itself)."""

    cheated: set[bytes] = field(default_factory=set)


def honest(ledger: Ledger, rng: random.Random) -> Strategy:
    def plan(p: FakeProvider, a: Any) -> ScriptedJob:
        return ScriptedJob(digest=honest_digest(a.job_id), runtime_ms=RUNTIME_MS)

    return plan


def cheat_with(q: float, tag: bytes = b"lazy") -> Callable[[Ledger, random.Random], Strategy]:
    """Commit garbage (``tag``: lazy, approximate) on a share ``q`` of jobs."""

    def make(ledger: Ledger, rng: random.Random) -> Strategy:
        def plan(p: FakeProvider, a: Any) -> ScriptedJob:
            if rng.random() < q:
                ledger.cheated.add(bytes(a.job_id))
                return ScriptedJob(digest=garbage(a.job_id, tag), runtime_ms=RUNTIME_MS)
            return ScriptedJob(digest=honest_digest(a.job_id), runtime_ms=RUNTIME_MS)

        return plan

    return make


def copier(ledger: Ledger, rng: random.Random) -> Strategy:
    """Copies what it can see: another seat's on-chain commitment of the same job, else
    the result the chain published last (``JobSettled``)."""

    def plan(p: FakeProvider, a: Any) -> ScriptedJob:
        assert p.chain is not None
        ledger.cheated.add(bytes(a.job_id))
        job_id = JobId(bytes(a.job_id))
        for seat in range(len(p.chain.get_seats(job_id))):
            entry = p.chain.on_chain_entry(job_id, seat)
            if seat != a.seat and entry.committed:
                return ScriptedJob(commit_hash=entry.commit_hash, runtime_ms=RUNTIME_MS)
        world = p.chain.world  # type: ignore[attr-defined]
        settled = [e for e in reversed(world.events) if e.name == "JobSettled"]
        result = bytes(settled[0].args["result"]) if settled else garbage(a.job_id)
        return ScriptedJob(digest=result, runtime_ms=RUNTIME_MS)

    return plan


def withholder(ledger: Ledger, rng: random.Random) -> Strategy:
    """Lazy, and refuses every reveal request once a second seat (a checker) exists."""

    def plan(p: FakeProvider, a: Any) -> ScriptedJob:
        ledger.cheated.add(bytes(a.job_id))
        return ScriptedJob(
            digest=garbage(a.job_id), runtime_ms=RUNTIME_MS, reveal="refuse_if_checked"
        )

    return plan


def chain_revealer(ledger: Ledger, rng: random.Random) -> Strategy:
    """Lazy; commits off chain, ignores reveal requests, reveals on chain once reveals open."""

    def plan(p: FakeProvider, a: Any) -> ScriptedJob:
        ledger.cheated.add(bytes(a.job_id))
        return ScriptedJob(
            digest=garbage(a.job_id), runtime_ms=RUNTIME_MS, reveal="refuse", reveal_on_chain=True
        )

    return plan


STRATEGIES: dict[str, Callable[[Ledger, random.Random], Strategy]] = {
    "honest": honest,
    "lazy (always)": cheat_with(1.0),
    "cheat q=0.01": cheat_with(0.01),
    "cheat q=0.1": cheat_with(0.1),
    "cheat q=0.5": cheat_with(0.5),
    "approximate": cheat_with(1.0, b"approx"),
    "copy": copier,
    "withhold when checked": withholder,
    "reveal only on chain": chain_revealer,
}


# --- the market -----------------------------------------------------------------------


def wealth(h: Harness, address: str) -> int:
    """Everything an account owns on the chain: tokens, claimable, stake, unbonding, bond."""
    w = h.world
    total = w.client(address).token_balance(address) + w.client(address).claimable(address)
    p = w.provider(address)
    total += p.stake + w.unbonding(address).amount
    coordinator = w.client(address).coordinator_info(address)
    return int(total + coordinator.bond)


@dataclass
class JobRun:
    job: JobRecord
    seats: int  # seats on chain
    ran: int  # seats that committed (ran the job)
    paid: bool  # settled with a result
    finalized: bool  # decided on chain after the settle deadline (finalize/reclaim)
    cheater_seated: bool
    cheater_primary: bool
    cheater_paid: bool
    cheater_slashed: bool
    checked: bool  # a second seat joined the job


async def established(h: Harness, address: str) -> None:
    """Give ``address`` an established record (``ESTABLISHED``) in the coordinator's
    reputation book and store, and push it to the matcher."""
    rep = h.driver.closer.reputation
    seeded = Reputation.from_counters(*ESTABLISHED, rep.clock(), rep.params)
    await h.store.save_reputation(address, seeded.alpha, seeded.beta, seeded.updated_at)
    rep.load([ReputationRecord(address, seeded.alpha, seeded.beta, seeded.updated_at)])
    h.book.set_reputation(address, rep.lower_bound(address), rep.newcomer(address))


def next_deadline(h: Harness, job: JobRecord, slots: list[Any]) -> int:
    """The next chain time at which something about the job may change."""
    now = h.world.time
    terms = job.terms()
    seats = [s.seat() for s in slots if s.state.on_chain]
    times = [job.assign_deadline, job.spare_deadline, job.settle_deadline]
    times += [s.assigned_at + job.commit_window for s in slots if s.assigned_at]
    if seats:
        times += [terms.reveal_open(seats), terms.reveal_close(seats)]
    later = [t for t in times if t >= now]
    return min(later) + 1 if later else now + 60


async def drive(h: Harness, job_id: str, watch: list[FakeProvider]) -> JobRecord:
    """Step a job to its end, moving the chain's clock only when nothing else happens."""
    last: object = None
    for _ in range(MAX_STEPS):
        job = await h.job(job_id)
        if job.state.terminal:
            return job
        await h.step(job_id)
        for p in watch:
            p.post_reveals()
        job = await h.job(job_id)
        slots = await h.slots(job_id)
        snap = (
            job.state,
            job.checker,
            tuple(
                (s.idx, s.state, s.reveal_attempts, s.committed, s.onchain_reveal_hash)
                for s in slots
            ),
        )
        if snap == last and not job.state.terminal:
            h.world.advance(max(1, next_deadline(h, job, slots) - h.world.time))
        last = snap
    raise RuntimeError(f"job {job_id} did not end in {MAX_STEPS} steps: {job.state}")


async def finish_on_chain(h: Harness, job_id: str) -> bool:
    """A job the coordinator gave up while seats had committed stays open on chain: after
    its settle deadline exactly one of finalize / reclaim succeeds. True when needed."""
    key = JobId(bytes.fromhex(job_id[2:]))
    chain = h.chain(h.requester)
    status, _ = chain.job_status(key)
    if status not in (JobStatus.OPEN, JobStatus.ASSIGNED):
        return False
    job = await h.job(job_id)
    if h.world.time <= job.settle_deadline:
        h.world.advance(job.settle_deadline - h.world.time + 1)
    try:
        chain.finalize(key)
    except ContractError:
        chain.reclaim(key)
    await h.watcher.poll_once()
    return True


async def run_job(h: Harness, cheater: FakeProvider | None, watch: list[FakeProvider]) -> JobRun:
    before = h.world.provider(cheater.address) if cheater else None
    earned0 = before.earned if before else 0
    slashed0 = before.slashed if before else 0
    job_id = await h.create_job(1)
    job = await drive(h, job_id, watch)
    finalized = await finish_on_chain(h, job_id)
    slots = [s for s in await h.slots(job_id) if s.state.on_chain or s.assigned_at]
    onchain = h.chain(h.requester).get_seats(JobId(bytes.fromhex(job_id[2:])))
    addresses = [s.provider.lower() for s in onchain]
    ran = sum(1 for s in slots if s.committed)
    after = h.world.provider(cheater.address) if cheater else None
    seated = cheater is not None and cheater.address.lower() in addresses
    return JobRun(
        job=job,
        seats=len(onchain),
        ran=ran,
        paid=job.state is not None and job.result_cid is not None and not finalized,
        finalized=finalized,
        cheater_seated=seated,
        cheater_primary=seated and addresses[0] == cheater.address.lower(),  # type: ignore[union-attr]
        cheater_paid=after is not None and after.earned > earned0,
        cheater_slashed=after is not None and after.slashed > slashed0,
        checked=len(onchain) > 1,
    )


def strategy_rng(seed: int) -> random.Random:
    """The strategies' own randomness, independent of the coordinator's spot-check draws
    (which the harness seeds with ``seed``): a cheater must not share the checker's dice."""
    return random.Random(f"strategy/{seed}")


def _scratch() -> str | None:
    """Where the coordinator's sqlite files go: memory-backed when the machine has it
    (a commit there costs no disk flush)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Warnings and below unlogged while a scenario runs (thousands of expected slashes
    and mismatches), and logging as it was afterwards."""
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(before)


async def _open(tmp: Path, seed: int, *, newcomer: bool = False) -> Any:
    # A newcomer must undercut more: the matcher divides price by its reputation.
    rates = [NEWCOMER_RATE if newcomer else CHEATER_RATE] + [RATE] * len(HONEST_GROUPS)
    return harness(
        tmp,
        1 + len(HONEST_GROUPS),
        groups=[CHEATER_GROUP, *HONEST_GROUPS],
        rates=rates,
        seed=seed,
        pause_s=0,
        inline=True,
        runtime_ms=RUNTIME_MS,
    )


async def _setup(h: Harness, strategy: Strategy, rng: random.Random, *, newcomer: bool) -> None:
    cheater, *others = h.providers
    ledger_honest = Ledger()
    for p in others:
        p.strategy = honest(ledger_honest, rng)
        await established(h, p.address)
    cheater.strategy = strategy
    if not newcomer:
        await established(h, cheater.address)
    minter = h.world.client("0x" + _minter_key())
    minter.mint(h.requester.address, REQUESTER_FUNDS)  # escrow for thousands of jobs
    minter.mint(cheater.address, TOP_UP)
    h.chain(cheater.identity).stake(TOP_UP)
    h.book.set_chain_facts(
        cheater.address, registered=True, free_stake=STAKE + TOP_UP, group=CHEATER_GROUP
    )


def _minter_key() -> str:
    return identity(2).private_key.hex()


# --- scenarios (each runs in its own process) ----------------------------------------


def profit_run(name: str, jobs: int, seed: int, newcomer: bool = False) -> dict[str, Any]:
    """``jobs`` jobs with the strategy's provider among honest ones; what it earned.

    An established cheater comes back established after every slash (free re-entry under a
    fresh record: the adversary's best case, and many more cheats per row than a cheater
    the matcher prices out after its first slashes). The newcomer row never re-enters."""

    async def main() -> dict[str, Any]:
        rng = strategy_rng(seed)
        ledger = Ledger()
        with tempfile.TemporaryDirectory(dir=_scratch()) as tmp:
            async with await _open(Path(tmp), seed, newcomer=newcomer) as h:
                await _setup(h, STRATEGIES[name](ledger, rng), rng, newcomer=newcomer)
                cheater = h.providers[0]
                start = {p.address: wealth(h, p.address) for p in h.providers}
                requester0 = wealth(h, h.requester.address)
                burned0 = h.world.burned
                t0 = time.perf_counter()
                seated = primary = detected = slashed = paid_cheats = cheats = 0
                ran = seats = paid_jobs = finalized = 0
                price = cheater.price_per_hour * RUNTIME_MS // 3_600_000
                per_cheat: list[float] = []  # the cheater's wealth change on each cheated job
                lcb_caught: float | None = None  # its reputation right after its first slash
                for _ in range(jobs):
                    before = wealth(h, cheater.address)
                    run = await run_job(h, cheater, [cheater])
                    ran, seats = ran + run.ran, seats + run.seats
                    paid_jobs += run.paid
                    finalized += run.finalized
                    if not run.cheater_seated:
                        continue
                    seated += 1
                    primary += run.cheater_primary
                    key = bytes.fromhex(run.job.job_id[2:])
                    if key in ledger.cheated:
                        cheats += 1
                        detected += not run.cheater_paid
                        paid_cheats += run.cheater_paid
                        per_cheat.append((wealth(h, cheater.address) - before) / price)
                    slashed += run.cheater_slashed
                    if run.cheater_slashed:
                        rep = h.driver.closer.reputation
                        if lcb_caught is None:
                            lcb_caught = rep.lower_bound(cheater.address)
                        if not newcomer:
                            await established(h, cheater.address)
                wall = time.perf_counter() - t0
                delta = wealth(h, cheater.address) - start[cheater.address]
                honest_deltas = [
                    (wealth(h, p.address) - start[p.address]) / price for p in h.providers[1:]
                ]
                rep = h.driver.closer.reputation
                return {
                    "strategy": name + (" (newcomer)" if newcomer else ""),
                    "jobs": jobs,
                    "seated": seated,
                    "primary": primary,
                    "cheats": cheats,
                    "detected": detected,
                    "cheats_paid": paid_cheats,
                    "slashed": slashed,
                    "driver": type(h.driver).__module__,
                    "profit_per_job": delta / price / max(1, seated),
                    "profit_per_cheat": statistics.fmean(per_cheat) if per_cheat else None,
                    "profit_per_cheat_se": statistics.stdev(per_cheat) / len(per_cheat) ** 0.5
                    if len(per_cheat) > 1
                    else None,
                    "honest_peers_profit_total": sum(honest_deltas),
                    "lcb_after": rep.lower_bound(cheater.address),
                    "lcb_caught": lcb_caught,
                    "overhead": ran / max(1, paid_jobs),
                    "seats_per_job": seats / jobs,
                    "paid_jobs": paid_jobs,
                    "finalized_jobs": finalized,
                    "requester_spent_per_job": (requester0 - wealth(h, h.requester.address))
                    / price
                    / jobs,
                    "burned": h.world.burned - burned0,
                    "wall_s": wall,
                }

    with _quiet():
        return trio.run(main)


def detection_run(name: str, trials: int, seed: int) -> dict[str, Any]:
    """Cheats until the first slash, over ``trials`` established starts (the reputation
    is reset to established after every slash: a fresh provider with the same key)."""

    async def main() -> dict[str, Any]:
        rng = strategy_rng(seed)
        ledger = Ledger()
        counts: list[int | None] = []
        jobs = 0
        with tempfile.TemporaryDirectory(dir=_scratch()) as tmp:
            async with await _open(Path(tmp), seed) as h:
                await _setup(h, STRATEGIES[name](ledger, rng), rng, newcomer=False)
                cheater = h.providers[0]
                t0 = time.perf_counter()
                cheats = 0
                while len(counts) < trials:
                    run = await run_job(h, cheater, [cheater])
                    jobs += 1
                    if run.cheater_seated and bytes.fromhex(run.job.job_id[2:]) in ledger.cheated:
                        cheats += 1
                    if run.cheater_slashed:
                        counts.append(cheats)
                        cheats = 0
                        await established(h, cheater.address)
                    elif cheats >= DETECT_CAP:
                        counts.append(None)
                        cheats = 0
                        await established(h, cheater.address)
                wall = time.perf_counter() - t0
        caught = [c for c in counts if c is not None]
        return {
            "strategy": name,
            "trials": trials,
            "jobs": jobs,
            "cheats_before_slash": counts,
            "detect_before_25": sum(1 for c in caught if c <= 25) / trials,
            "median_cheats": statistics.median(
                [c if c is not None else DETECT_CAP + 1 for c in counts]
            ),
            "never_slashed": counts.count(None),
            "wall_s": wall,
        }

    with _quiet():
        return trio.run(main)


def collusion_run(jobs: int, seed: int) -> dict[str, Any]:
    """A second coordinator bonded on the same chain, whose jobs only its own sybil
    providers serve (lazy, all the same garbage; on a third of the jobs its primary
    disagrees on purpose, so a sybil is slashed when checked). Honest requesters pay."""

    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(dir=_scratch()) as tmp:
            async with await _open(Path(tmp), seed) as market:
                rng = strategy_rng(seed)
                await _setup(market, honest(Ledger(), rng), rng, newcomer=False)
                async with harness(
                    Path(tmp),
                    3,
                    groups=[201, 202, 203],
                    world=market.world,
                    tag="colluder",
                    seed=seed + 1,
                    pause_s=0,
                    inline=True,
                    runtime_ms=RUNTIME_MS,
                ) as bad:

                    def sybil(p: FakeProvider, a: Any) -> ScriptedJob:
                        split = a.seat == 0 and bytes(a.job_id)[0] % 3 == 0
                        digest = garbage(a.job_id, b"split" if split else b"sybil")
                        return ScriptedJob(digest=digest, runtime_ms=RUNTIME_MS)

                    for p in bad.providers:
                        p.strategy = sybil
                        await established(bad, p.address)
                    coalition = [bad.coordinator.address] + [p.address for p in bad.providers]
                    start = {a: wealth(bad, a) for a in coalition}
                    victim0 = wealth(bad, bad.requester.address)
                    burned0 = bad.world.burned
                    honest0 = wealth(market, market.requester.address)
                    wrong = 0
                    for _ in range(jobs):
                        run = await run_job(bad, None, [])
                        key = bytes.fromhex(run.job.job_id[2:])
                        result = run.job.result_cid
                        wrong += result is not None and result != honest_cid(key)
                        await run_job(market, None, [])  # the honest market goes on meanwhile
                    gains = {a: wealth(bad, a) - start[a] for a in coalition}
                    coalition_gain = sum(gains.values())
                    loss = victim0 - wealth(bad, bad.requester.address)
                    burned = bad.world.burned - burned0
                    coordinator_gain = gains[bad.coordinator.address]
                    fees = FEE * jobs
                    return {
                        "jobs": jobs,
                        "wrong_results_accepted": wrong,
                        "coalition_gain": coalition_gain,
                        "requester_loss": loss,
                        "burned": burned,
                        "coordinator_gain": coordinator_gain,
                        "fees": fees,
                        "coordinator_within_fee": coordinator_gain <= fees,
                        "slash_never_credited": coalition_gain + burned == loss,
                        "coalition_gain_per_job_prices": coalition_gain
                        / (RATE * RUNTIME_MS // 3_600_000)
                        / jobs,
                        "honest_requester_spent": honest0
                        - wealth(market, market.requester.address),
                    }

    with _quiet():
        return trio.run(main)


def honest_cid(job_id: bytes) -> str:
    return str(digest_to_cid(honest_digest(job_id)))


# --- the report ------------------------------------------------------------------------

PROFIT_ROWS = list(STRATEGIES)
JOB_SCALE = {"cheat q=0.01": 3, "cheat q=0.1": 3}
"""Rare cheaters run longer, so that their row holds more than a handful of cheats."""


def simulate(jobs: int, trials: int, q_trials: int, collusion_jobs: int, seed: int, workers: int):
    """Run every scenario (in ``workers`` processes); returns the figures as measured."""
    t0 = time.perf_counter()
    tasks: list[tuple[str, Callable[..., dict[str, Any]], tuple[Any, ...]]] = [
        ("detect lazy", detection_run, ("lazy (always)", trials, seed + 101)),
        ("detect q=0.1", detection_run, ("cheat q=0.1", q_trials, seed + 102)),
    ]
    tasks += [
        (name, profit_run, (name, jobs * JOB_SCALE.get(name, 1), seed + i))
        for i, name in enumerate(PROFIT_ROWS)
    ]
    tasks.append(("newcomer", profit_run, ("lazy (always)", jobs, seed + 50, True)))
    tasks.append(("collusion", collusion_run, (collusion_jobs, seed + 200)))
    results: dict[str, dict[str, Any]] = {}
    if workers <= 1:
        for key, fn, args in tasks:
            results[key] = fn(*args)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {key: pool.submit(_guarded, fn, *args) for key, fn, args in tasks}
            results = {key: f.result() for key, f in futures.items()}
    rows = [results[name] for name in PROFIT_ROWS] + [results["newcomer"]]
    simulated = sum(r["jobs"] for r in rows) + results["detect lazy"]["jobs"]
    simulated += results["detect q=0.1"]["jobs"] + 2 * collusion_jobs
    busy = sum(r["wall_s"] for r in rows) + results["detect lazy"]["wall_s"]
    busy += results["detect q=0.1"]["wall_s"]
    return {
        "rows": rows,
        "detect_lazy": results["detect lazy"],
        "detect_q": results["detect q=0.1"],
        "collusion": results["collusion"],
        "jobs_simulated": simulated,
        "jobs_per_s_per_process": (simulated - 2 * collusion_jobs) / busy,
        "wall_s": time.perf_counter() - t0,
    }


def _guarded(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run a scenario in a worker; its failure comes back as text (chain errors do not
    survive pickling)."""
    try:
        return fn(*args)
    except BaseException as exc:
        text = "".join(traceback.format_exception(exc))
        raise RuntimeError(f"{fn.__name__}{args}: {text}") from None


def render(out: dict[str, Any]) -> None:
    print(
        f"{'strategy':<32}{'jobs':>6}{'seated':>7}{'cheats':>7}{'detected':>9}{'slashed':>8}"
        f"{'cheats paid':>12}{'profit/job':>11}{'profit/cheat':>20}{'LCB caught':>11}"
        f"{'LCB end':>8}{'overhead':>9}"
    )
    for r in out["rows"]:
        cheat = "-"
        caught = "-" if r["lcb_caught"] is None else f"{r['lcb_caught']:.3f}"
        if r["profit_per_cheat"] is not None:
            se = r["profit_per_cheat_se"]
            cheat = f"{r['profit_per_cheat']:+.3f}" + (f" ± {se:.3f}" if se is not None else "")
        print(
            f"{r['strategy']:<32}{r['jobs']:>6}{r['seated']:>7}{r['cheats']:>7}"
            f"{r['detected']:>9}{r['slashed']:>8}{r['cheats_paid']:>12}"
            f"{r['profit_per_job']:>+11.3f}{cheat:>20}{caught:>11}{r['lcb_after']:>8.3f}"
            f"{r['overhead']:>9.3f}"
        )
    print(
        "profit/job: the provider's wealth change on the chain / jobs it sat on / its seat "
        "price; profit/cheat: its wealth change on the jobs it cheated on / cheats / seat "
        "price (± one standard error), i.e. what cheating earns when skipping the work saves "
        "exactly the seat's price; detected: cheated jobs it was not paid for; LCB caught: "
        "its reputation's lower bound right after its first slash (an established cheater "
        "then re-enters established); overhead: seats that ran per settled job"
    )
    d, q = out["detect_lazy"], out["detect_q"]
    print(
        f"always-lazy established: first slash at or before cheat #25 in "
        f"{d['detect_before_25']:.3f} of {d['trials']} trials (median cheat #"
        f"{d['median_cheats']}, never slashed within {DETECT_CAP}: {d['never_slashed']})"
    )
    print(
        f"cheat q=0.1 established: median {q['median_cheats']} cheats before the first slash "
        f"({q['trials']} trials, never slashed within {DETECT_CAP}: {q['never_slashed']})"
    )
    c = out["collusion"]
    print(
        f"colluding coordinator + sybils, {c['jobs']} jobs: {c['wrong_results_accepted']} wrong "
        f"results settled; coalition gained {c['coalition_gain']}, requesters lost "
        f"{c['requester_loss']}, burned {c['burned']}; the coordinator gained "
        f"{c['coordinator_gain']} (fees {c['fees']}): within fee {c['coordinator_within_fee']}, "
        f"gain == loss - burned {c['slash_never_credited']}"
    )
    print(
        f"{out['jobs_simulated']} jobs in {out['wall_s']:.1f}s "
        f"({out['jobs_per_s_per_process']:.1f} jobs/s per process)"
    )


def figures(out: dict[str, Any]) -> dict[str, Any]:
    rows = {r["strategy"]: r for r in out["rows"]}
    cheaters = {
        name: r["profit_per_cheat"]
        for name, r in rows.items()
        if name != "honest" and r["profit_per_cheat"] is not None
    }
    real = all(r["driver"] == JobDriver.__module__ for r in rows.values())
    return {
        "driver": "coordinator" if real else "not the coordinator",
        "profit_unit": "seat prices per cheated job (chain balances)",
        "cheater_profit_per_job": cheaters,
        "cheater_profit_se": {name: rows[name]["profit_per_cheat_se"] for name in cheaters},
        "cheats_by_strategy": {name: r["cheats"] for name, r in rows.items()},
        "max_cheater_profit_per_job": max(cheaters.values()),
        "honest_profit_per_job": rows["honest"]["profit_per_job"],
        "detect_before_25_cheats": out["detect_lazy"]["detect_before_25"],
        "median_cheats_before_slash_q0.1": out["detect_q"]["median_cheats"],
        "overhead_established": rows["honest"]["overhead"],
        "slashed_by_strategy": {name: r["slashed"] for name, r in rows.items()},
        "cheats_paid_by_strategy": {name: r["cheats_paid"] for name, r in rows.items()},
        "collusion": out["collusion"],
        "jobs_simulated": out["jobs_simulated"],
        "jobs_per_s_per_process": out["jobs_per_s_per_process"],
        "wall_s": out["wall_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="small numbers (a smoke run)")
    ap.add_argument(
        "--jobs", type=int, help="jobs per strategy, x3 for q=0.01 and q=0.1 (default 1000)"
    )
    ap.add_argument("--trials", type=int, help="lazy detection trials (default 200; quick 20)")
    ap.add_argument("--q-trials", type=int, help="q=0.1 detection trials (default 40; quick 5)")
    ap.add_argument("--collusion-jobs", type=int, help="default 40; quick 10")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    quick = args.quick
    out = simulate(
        args.jobs or (30 if quick else 1000),
        args.trials or (20 if quick else 200),
        args.q_trials or (5 if quick else 40),
        args.collusion_jobs or (10 if quick else 40),
        args.seed,
        args.workers,
    )
    render(out)
    if args.json:
        print(json.dumps(figures(out)))


if __name__ == "__main__":
    main()
