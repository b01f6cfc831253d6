"""``gpumarket provider earnings``: paid, pending, slashed, claimable and claimed amounts per
job and in total, read from the market's events alone, checked against what the market
holds (``provider_info(...).earned``, ``claimable``, stake lost) on the in-memory chain and
once through the CLI on a real Anvil."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
import typer
from typer.testing import CliRunner, Result

from contracts.models import ChainEvent
from devnet.anvil import dev_accounts
from protocol.errors import ConfigError
from protocol.ids import JobId, Wei, job_id_hex, to_wei
from protocol.ipfs.kubo import KuboContentStore
from protocol.ipfs.memory import MemoryContentStore
from protocol.ipfs.store import ContentStore
from provider_node import commands
from provider_node.commands import register_commands
from provider_node.earnings import (
    NotAProvider,
    earnings_lines,
    first_block_at,
    parse_since,
    read_earnings,
    read_events,
    spec_gpus,
    tally,
)
from tests.contracts.harness import (
    BAD,
    FACTOR,
    GOOD,
    PRICE,
    SPEC_CID,
    STAKE,
    Market,
    fake_market,
)

PAY = 100_000  # the harness's 100 s runtime at 3.60 tokens per hour: 0.1 token
DAY = 86_400


@dataclass
class Story:
    """Jobs of every kind for provider 0, and what the market held along the way."""

    m: Market
    slashed: JobId  # 0, 1, 2 seated; 1 is outvoted and slashed; 0 and 2 paid
    pending: JobId  # 0 and 3 seated, never settled
    aborted: JobId  # 0 and 4 seated, aborted by the coordinator
    late: JobId  # 0 and 1 seated two days later, both paid
    claimed: int  # what provider 0 claimed between the first jobs and the late one


def story(m: Market) -> Story:
    slashed = m.create(3)
    m.assign(slashed, 0, 1, 2)
    pending = m.create(2)
    m.assign(pending, 0, 3)
    aborted = m.create(2)
    m.assign(aborted, 0, 4)
    m.coordinator.settle(m.settlement(slashed, [GOOD, BAD, GOOD]))
    m.coordinator.abort(aborted)
    p0 = m.providers[0]
    claimed = p0.claimable(p0.address)
    p0.claim()
    m.advance(2 * DAY)
    late = m.create(2)
    m.assign(late, 0, 1)
    m.coordinator.settle(m.settlement(late, [GOOD, GOOD]))
    return Story(m, slashed, pending, aborted, late, claimed)


@pytest.fixture
def fake() -> Story:
    return story(fake_market([a.private_key for a in dev_accounts()]))


def by_job(report: Any) -> dict[JobId, Any]:
    return {j.job_id: j for j in report.jobs}


def test_paid_pending_claimed_and_claimable_match_the_market(fake: Story) -> None:
    m, p0 = fake.m, fake.m.providers[0]
    report = read_earnings(p0, p0.address, market=m.deployment.market)

    assert fake.claimed == PAY  # the first job's pay, nothing else owed to provider 0
    assert report.paid == fake.claimed + p0.provider_info(p0.address).earned == 2 * PAY
    assert report.claimed == fake.claimed and report.claims == 1
    assert report.claimable == p0.claimable(p0.address) == PAY
    assert report.slashed == 0
    jobs = by_job(report)
    assert [jobs[j].outcome for j in (fake.slashed, fake.pending, fake.aborted, fake.late)] == [
        "paid",
        "pending",
        "aborted",
        "paid",
    ]
    assert jobs[fake.pending].price == PRICE and jobs[fake.pending].closed_block is None
    assert [j.job_id for j in report.pending] == [fake.pending]
    assert report.billed_ms == 200_000  # 100 s per paid seat
    assert report.rate_per_hour == Decimal(to_wei("3.60"))
    view = report.view()
    assert (view["paid"], view["claimable"], view["claimed"]) == ("0.2", "0.1", "0.1")
    assert (view["pending_jobs"], view["pending_up_to"]) == (1, "2")
    assert (view["billed_seat_s"], view["rate_per_seat_hour"]) == ("200", "3.6")


def spec(gpus: int) -> bytes:
    """A job spec asking for ``gpus`` GPUs, as the wallet stores it (JSON)."""
    return json.dumps(
        {
            "name": f"gpus-{gpus}",
            "runtime": {"kind": "torch", "entrypoint": "main.py"},
            "resources": {"gpus": gpus},
            "verification": {"redundancy": 2, "compare": "exact"},
            "price": {"max_per_provider": "2.50"},
            "timeout": "2m",
        }
    ).encode()


async def add_specs(store: ContentStore) -> tuple[str, str]:
    """(CID of a 2-GPU spec, CID of a CPU spec) added to ``store``."""
    return await store.add_bytes(spec(2)), await store.add_bytes(spec(0))


def test_time_sold_is_counted_in_gpu_and_cpu_seconds_from_each_jobs_spec() -> None:
    m = fake_market([a.private_key for a in dev_accounts()])
    store = MemoryContentStore()
    two_gpus, cpu = trio.run(add_specs, store)
    jobs = {"gpu": m.create(2, spec_cid=two_gpus), "cpu": m.create(2, spec_cid=cpu)}
    jobs["lost"] = m.create(2, spec_cid=SPEC_CID)  # a spec nobody has
    for job_id in jobs.values():
        m.assign(job_id, 0, 1)
        m.coordinator.settle(m.settlement(job_id, [GOOD, GOOD]))
    p0 = m.providers[0]
    asked: list[set[str]] = []

    def gpus_of(cids: Any) -> Any:
        asked.append(set(cids))
        return trio.run(spec_gpus, store, cids)

    report = read_earnings(p0, p0.address, market=m.deployment.market, gpus_of=gpus_of)
    assert asked == [{two_gpus, cpu, SPEC_CID}]  # each spec fetched once
    got = by_job(report)
    assert [got[jobs[k]].gpus for k in ("gpu", "cpu", "lost")] == [2, 0, None]
    # 100 s billed per seat, 0.1 token each: 200 GPU-s on the 2-GPU job, 100 CPU-s.
    assert (report.gpu_ms, report.cpu_ms, report.billed_ms) == (200_000, 100_000, 300_000)
    assert report.rate_per_gpu_hour == Decimal(to_wei("1.8"))
    assert report.rate_per_cpu_hour == Decimal(to_wei("3.6"))
    assert [j.job_id for j in report.unknown_gpus] == [jobs["lost"]]
    view = report.view()
    assert (view["gpu_s"], view["cpu_s"], view["billed_seat_s"]) == ("200", "100", "300")
    assert (view["rate_per_gpu_hour"], view["rate_per_cpu_hour"]) == ("1.8", "3.6")
    assert view["gpus_unknown_jobs"] == [job_id_hex(jobs["lost"])]
    assert [j["gpu_s"] for j in view["jobs"]] == ["200", "0", None]
    lines = "\n".join(earnings_lines(report))
    assert "200 GPU-seconds, 100 CPU-seconds (300 billed seat-seconds)" in lines
    assert "1.8 tokens per GPU-hour, 3.6 tokens per CPU-hour" in lines
    assert "unknown GPUs: 1 job whose spec could not be read" in lines
    # Without a lookup nothing is guessed: every job's GPUs stay unknown.
    blind = read_earnings(p0, p0.address, market=m.deployment.market)
    assert (blind.gpu_ms, blind.cpu_ms, len(blind.unknown_gpus)) == (0, 0, 3)


def test_a_spec_that_is_late_or_not_a_spec_counts_as_unknown() -> None:
    class Slow(MemoryContentStore):
        async def read_bytes(self, cid: str, *, max_size: int = 1 << 30) -> bytes:
            await trio.sleep(60)
            raise AssertionError("the timeout should have fired")

    async def go() -> tuple[dict[str, int | None], dict[str, int | None]]:
        store = MemoryContentStore()
        junk = await store.add_bytes(b"name: [unclosed")
        good, _ = await add_specs(store)
        slow = await spec_gpus(Slow(), [good], timeout_s=0.05)
        return await spec_gpus(store, [junk, good]), slow

    found, slow = trio.run(go)
    assert sorted(found.values(), key=str) == [2, None]
    assert list(slow.values()) == [None]


def test_a_slash_is_the_stake_the_market_took(fake: Story) -> None:
    m, p1 = fake.m, fake.m.providers[1]
    report = read_earnings(p1, p1.address, market=m.deployment.market)

    lost = STAKE - p1.provider_info(p1.address).stake
    assert report.slashed == lost == PRICE * FACTOR
    jobs = by_job(report)
    assert jobs[fake.slashed].outcome == "slashed"
    assert jobs[fake.slashed].paid == 0 and jobs[fake.slashed].billed_ms == 0
    assert jobs[fake.late].outcome == "paid"
    assert report.paid == p1.provider_info(p1.address).earned == PAY
    assert report.claimable == p1.claimable(p1.address) == PAY


def test_since_keeps_recently_closed_jobs_and_claims_and_every_pending_job(fake: Story) -> None:
    m, p0 = fake.m, fake.m.providers[0]
    for since in ("1d", "24h", "30m"):
        report = read_earnings(p0, p0.address, market=m.deployment.market, since=since)
        assert {j.job_id for j in report.jobs} == {fake.late, fake.pending}, since
        assert report.paid == PAY and report.claimed == 0 and report.claims == 0
        assert report.claimable == PAY  # claimable is now, whatever the window
    everything = read_earnings(p0, p0.address, market=m.deployment.market, since="3d")
    assert len(everything.jobs) == 4 and everything.claimed == PAY
    settled = max(e.block_number for e in p0.get_events(0, p0.block_number()))
    exactly = datetime.fromtimestamp(p0.block_timestamp(settled), UTC).isoformat()
    edge = read_earnings(p0, p0.address, market=m.deployment.market, since=exactly)
    assert edge.since_block == settled and [j.job_id for j in edge.closed] == [fake.late]
    started = datetime.fromtimestamp(p0.now() - DAY, UTC).isoformat()
    assert by_job(read_earnings(p0, p0.address, market=m.deployment.market, since=started)).keys(
    ) == {fake.late, fake.pending}  # fmt: skip


def test_from_block_skips_what_came_before(fake: Story) -> None:
    m, p0 = fake.m, fake.m.providers[0]
    late_block = min(
        e.block_number for e in p0.get_events(0, p0.block_number()) if e.name == "JobCreated"
        and bytes(e.args["jobId"]) == fake.late
    )  # fmt: skip
    report = read_earnings(p0, p0.address, market=m.deployment.market, from_block=late_block)
    assert [j.job_id for j in report.jobs] == [fake.late]
    assert report.from_block == late_block and report.claimed == 0


def test_events_are_read_in_bounded_ranges(fake: Story) -> None:
    p0 = fake.m.providers[0]
    asked: list[tuple[int, int]] = []

    class Counting:
        def get_events(self, start: int, end: int) -> list[ChainEvent]:
            asked.append((start, end))
            return p0.get_events(start, end)

    head = p0.block_number()
    chunked = list(read_events(Counting(), 0, head, chunk=7))  # type: ignore[arg-type]
    assert chunked == p0.get_events(0, head)
    assert all(end - start < 7 for start, end in asked)
    assert asked[0][0] == 0 and asked[-1][1] == head
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(asked))


def test_first_block_at_finds_the_first_block_at_or_after_a_time(fake: Story) -> None:
    p0 = fake.m.providers[0]
    head = p0.block_number()
    times = {n: p0.block_timestamp(n) for n in range(1, head + 1)}
    gap = max(range(2, head + 1), key=lambda n: times[n] - times[n - 1])  # the 2-day jump
    assert first_block_at(p0, times[gap], 1, head) == gap
    assert first_block_at(p0, times[gap - 1] + 1, 1, head) == gap
    assert first_block_at(p0, 0, 1, head) == 1
    assert first_block_at(p0, times[head] + 1, 1, head) == head + 1


@pytest.fixture
def far_east(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local time zone is not UTC (dates without a zone must still be read as UTC)."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


def test_parse_since_takes_durations_and_iso_dates(far_east: None) -> None:
    now = 1_700_000_000
    assert parse_since("7d", now) == now - 7 * DAY
    assert parse_since("24h", now) == now - DAY
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2025-01-31", now) == int(datetime(2025, 1, 31, tzinfo=UTC).timestamp())
    assert parse_since("2025-01-31T02:00:00+02:00", now) == parse_since("2025-01-31", now)
    with pytest.raises(ConfigError, match="--since 'yesterday'"):
        parse_since("yesterday", now)


def test_an_account_that_is_not_a_provider_is_refused(fake: Story) -> None:
    m = fake.m
    with pytest.raises(NotAProvider, match="is not a registered provider"):
        read_earnings(m.requester, m.requester.address, market=m.deployment.market)


def test_tally_ignores_other_providers_and_other_contracts() -> None:
    me, other = (a.address for a in dev_accounts()[:2])
    job = JobId(b"\x01" * 32)

    def ev(name: str, block: int, contract: str = "market", **args: Any) -> ChainEvent:
        return ChainEvent(name, contract, args, block, "0x", 0)

    seat: dict[str, Any] = {"price": 5, "ratePerHour": 1, "assignedAt": 0}
    events = [
        ev("ProviderAssigned", 1, jobId=job, provider=other, seat=0, **seat),
        ev("ProviderAssigned", 1, jobId=job, provider=me.lower(), seat=1, **seat),
        ev("ProviderSlashed", 2, jobId=job, provider=other, amount=25),
        ev(
            "JobSettled",
            2,
            jobId=job,
            result=b"",
            winners=0b10,
            slashMask=0b01,
            paidAndBilled=[0, 3 << 64 | 7],
            refund=0,
        ),
        ev("Claimed", 3, account=other, amount=9),
        ev("Claimed", 3, "token", account=me, amount=9),
    ]
    lost = JobId(b"\x02" * 32)  # outvoted in a tolerance job: no pay, no slash
    events += [
        ev("ProviderAssigned", 4, jobId=lost, provider=me, seat=0, **seat),
        ev("ProviderAssigned", 4, jobId=lost, provider=other, seat=1, **seat),
        ev("JobSettled", 5, jobId=lost, result=b"", winners=0b10, slashMask=0,
           paidAndBilled=[0, 5 << 64 | 9], refund=0),
    ]  # fmt: skip
    jobs, claimed, claims = tally(events, me)
    assert [(j.seats, j.outcome, j.paid, j.billed_ms, j.slashed) for j in jobs] == [
        ([1], "paid", 3, 7, 0),
        ([0], "unpaid", 0, 0, 0),
    ]
    assert (claimed, claims) == (0, 0)


# the CLI ---------------------------------------------------------------------------------


def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> typer.Typer:
    for key in list(os.environ):
        if key.startswith("PROVIDER_"):
            monkeypatch.delenv(key)
    unused = "0x" + "11" * 20
    settings = {
        "RPC_URL": "http://127.0.0.1:9",
        "MARKET_ADDRESS": unused,
        "REGISTRY_ADDRESS": unused,
        "TOKEN_ADDRESS": unused,
        "KEYSTORE": str(tmp_path / "k.json"),
        "IPFS_API": "http://127.0.0.1:9",
        "WORK_DIR": str(tmp_path),
    } | env
    for key, value in settings.items():
        monkeypatch.setenv(f"PROVIDER_{key}", value)
    app = typer.Typer()
    register_commands(app)
    return app


def invoke(app: typer.Typer, *args: str) -> Result:
    return CliRunner().invoke(app, ["earnings", *args])


def test_the_command_prints_a_table_and_totals_with_units(
    fake: Story, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = cli(tmp_path, monkeypatch)
    monkeypatch.setattr(commands, "_chain", lambda settings: fake.m.providers[0])
    shown = invoke(app)
    assert shown.exit_code == 0, shown.output
    assert "paid:         0.2 tokens over 3 closed jobs" in shown.output
    assert "pending:      up to 2 tokens in 1 open job\n" in shown.output
    assert "claimable:    0.1 tokens now" in shown.output
    assert "claimed:      0.1 tokens in 1 claim\n" in shown.output
    # PROVIDER_IPFS_API is unreachable here: no GPU count is known, and the report says so.
    assert "rate:         - per GPU-hour, - per CPU-hour, 3.6 tokens per billed seat-hour" in (
        shown.output
    )
    assert "unknown GPUs: 2 jobs whose spec could not be read" in shown.output
    assert "aborted" in shown.output and "pending" in shown.output
    answer = json.loads(invoke(app, "--json", "--since", "1d").output)
    assert answer["paid"] == "0.1" and answer["unit"] == "tokens"
    assert {j["job_id"] for j in answer["jobs"]} == {
        job_id_hex(fake.late),
        job_id_hex(fake.pending),
    }
    head = fake.m.providers[0].block_number()
    monkeypatch.setenv("PROVIDER_START_BLOCK", str(head))
    late = json.loads(invoke(app, "--json").output)
    assert (late["from_block"], late["jobs"], late["paid"]) == (head, [], "0")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "give a duration like 7d"),
        (["-a", "0x1234"], "not an address"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    fake: Story, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    app, p0 = cli(tmp_path, monkeypatch), fake.m.providers[0]
    monkeypatch.setattr(commands, "_reader", lambda s, a: (p0, a or p0.address))
    failed = invoke(app, *args)
    assert failed.exit_code == 1
    assert message in failed.output and failed.output.count("\n") == 1, failed.output


def test_no_rpc_is_one_line_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = invoke(cli(tmp_path, monkeypatch), "-a", dev_accounts()[0].address)
    assert failed.exit_code == 1
    assert "cannot reach the node at http://127.0.0.1:9" in failed.output
    assert failed.output.startswith("error:") and "Traceback" not in failed.output


async def add_specs_at(api_url: str) -> tuple[str, str]:
    async with KuboContentStore(api_url) as store:
        return await add_specs(store)


@pytest.mark.integration
def test_the_command_on_anvil(
    real: Market,
    deployed: dict[str, str],
    ipfs: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    two_gpus, cpu = trio.run(add_specs_at, ipfs.api_url)
    done = real.create(3, spec_cid=two_gpus)
    real.assign(done, 0, 1, 2)
    real.coordinator.settle(real.settlement(done, [GOOD, BAD, GOOD]))
    on_cpu = real.create(2, spec_cid=cpu)
    real.assign(on_cpu, 0, 2)
    real.coordinator.settle(real.settlement(on_cpu, [GOOD, GOOD]))
    waiting = real.create(2)
    real.assign(waiting, 1, 3)
    app = cli(
        tmp_path,
        monkeypatch,
        RPC_URL=real.rpc_url,
        MARKET_ADDRESS=deployed["market"],
        REGISTRY_ADDRESS=deployed["registry"],
        TOKEN_ADDRESS=deployed["token"],
        IPFS_API=ipfs.api_url,
    )
    p1 = real.providers[1]
    shown = invoke(app, "-a", p1.address, "--json")
    assert shown.exit_code == 0, shown.output
    answer = json.loads(shown.output)
    lost = Wei(STAKE - p1.provider_info(p1.address).stake)
    assert answer["slashed"] == "10" and lost == PRICE * FACTOR
    assert (answer["paid"], answer["pending_jobs"], answer["pending_up_to"]) == ("0", 1, "2")
    assert [j["outcome"] for j in answer["jobs"]] == ["slashed", "pending"]
    table = invoke(app, "-a", real.providers[0].address, "--since", "7d")
    assert table.exit_code == 0, table.output
    assert "paid:         0.2 tokens over 2 closed jobs\n" in table.output
    assert "claimable:    0.2 tokens now" in table.output
    # Each job's GPUs come from its spec in IPFS: 100 s on 2 GPUs, 100 s on the CPU.
    assert "200 GPU-seconds, 100 CPU-seconds (200 billed seat-seconds)" in table.output
    assert "1.8 tokens per GPU-hour, 3.6 tokens per CPU-hour" in table.output
    assert "unknown GPUs" not in table.output
    stranger = invoke(app, "-a", real.requester.address)
    assert stranger.exit_code == 1 and "is not a registered provider" in stranger.output
