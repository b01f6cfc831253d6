"""A provider's earnings, read from the market's events alone.

:func:`tally` is pure: it folds decoded events (``ProviderAssigned``, ``JobSettled``,
``ProviderSlashed``, ``JobReclaimed``, ``JobAborted``, ``JobCancelled``, ``Claimed``) into
one :class:`JobEarning` per job the provider held a seat in, plus what it claimed.
:func:`read_earnings` is the small reader around it: events in bounded block ranges from
``from_block`` (the market's deployment block; 0 on a devnet) to the head, the
``--since`` window as a block number (block times only grow, so a binary search finds
it), and ``claimable`` now. Nothing comes from local state, so the answer is the same
right after a restart and on a fresh machine.

The chain knows each seat's billed milliseconds but not its GPU count: that is in the
job's spec, which the chain names by CID. :func:`read_earnings` asks a ``gpus_of`` lookup
(:func:`spec_gpus`: the specs fetched from IPFS, verified against their CIDs) for the
GPUs of each job that billed time, and reports GPU-seconds (billed seconds times the
job's GPUs) and CPU-seconds (jobs asking for no GPU) with the rate earned on each; a job
whose spec cannot be found counts as billed seat-seconds only, and is named.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import trio
from rich import box
from rich.table import Table

from contracts.models import MS_PER_HOUR, ChainEvent, JobInfo, ProviderInfo
from contracts.rules import unpack_paid_and_billed
from protocol.errors import ChainError, ConfigError, GpuMarketError
from protocol.ids import Address, JobId, Wei, format_tokens, job_id_hex, parse_address
from protocol.ipfs.kubo import KuboContentStore
from protocol.ipfs.store import ContentStore
from protocol.registry import MAX_SPEC_BYTES
from protocol.spec_io import parse_spec
from protocol.units import parse_duration

MAX_RANGE = 2000
SPEC_TIMEOUT_S = 10.0
"""How long one spec may take to arrive from IPFS before its job's GPUs count as unknown."""
SPEC_FETCHES = 8
"""Specs fetched at once."""
"""Blocks per ``eth_getLogs`` request (public nodes refuse much wider ranges)."""

CLOSING = {
    "JobSettled": "settled",
    "JobReclaimed": "reclaimed",
    "JobAborted": "aborted",
    "JobCancelled": "cancelled",
}
"""The events that close a job, and the state each leaves it in."""


class NotAProvider(ChainError):
    """The account is not registered as a provider on this market."""

    def __init__(self, address: str, market: str) -> None:
        self.address = address
        self.market = market
        super().__init__(f"{address} is not a registered provider on the market at {market}")


class EarningsChain(Protocol):
    """What the reader needs from a chain client (``Web3Chain`` and ``FakeChain`` fit)."""

    def block_number(self) -> int: ...
    def now(self) -> int: ...
    def block_timestamp(self, number: int) -> int: ...
    def get_events(self, from_block: int, to_block: int) -> list[ChainEvent]: ...
    def claimable(self, account: str) -> Wei: ...
    def provider_info(self, provider: str) -> ProviderInfo: ...
    def get_job(self, job_id: JobId) -> JobInfo: ...


GpusOf = Callable[[Collection[str]], Mapping[str, int | None]]
"""Spec CIDs to the GPUs each spec asks for (None: the spec could not be read)."""


@dataclass
class JobEarning:
    """The provider's seats in one job and what they brought. ``price`` is the most the
    seats could earn; ``state`` is "pending" until the job settles or is reclaimed,
    aborted or cancelled (``closed_block`` then)."""

    job_id: JobId
    seats: list[int]
    assigned_block: int
    price: int = 0
    state: str = "pending"
    closed_block: int | None = None
    won: bool = False
    paid: int = 0
    billed_ms: int = 0
    slashed: int = 0
    gpus: int | None = None
    """GPUs per seat from the job's spec (0: a CPU job); None until known."""

    @property
    def outcome(self) -> str:
        """pending, paid, slashed, unpaid (settled without pay), or how the job closed."""
        if self.state != "settled":
            return self.state
        if self.slashed:
            return "slashed"
        return "paid" if self.won else "unpaid"

    def view(self) -> dict[str, Any]:
        return {
            "job_id": job_id_hex(self.job_id),
            "seats": self.seats,
            "outcome": self.outcome,
            "assigned_block": self.assigned_block,
            "closed_block": self.closed_block,
            "price": format_tokens(self.price),
            "paid": format_tokens(self.paid),
            "slashed": format_tokens(self.slashed),
            "billed_s": seconds(self.billed_ms),
            "gpus": self.gpus,
            "gpu_s": None if self.gpus is None else seconds(self.billed_ms * self.gpus),
        }


@dataclass(frozen=True)
class Earnings:
    """Per job and in total, for ``address``; closed jobs only from ``since_block`` on."""

    address: Address
    from_block: int
    to_block: int
    since: int | None
    since_block: int | None
    jobs: tuple[JobEarning, ...]
    claimed: Wei
    claims: int
    claimable: Wei

    @property
    def closed(self) -> list[JobEarning]:
        return [j for j in self.jobs if j.state != "pending"]

    @property
    def pending(self) -> list[JobEarning]:
        return [j for j in self.jobs if j.state == "pending"]

    @property
    def paid(self) -> Wei:
        return Wei(sum(j.paid for j in self.jobs))

    @property
    def slashed(self) -> Wei:
        return Wei(sum(j.slashed for j in self.jobs))

    @property
    def billed_ms(self) -> int:
        return sum(j.billed_ms for j in self.jobs)

    @property
    def rate_per_hour(self) -> Decimal | None:
        """Paid per billed seat-hour, in base units; None before anything was billed."""
        return _per_hour(self.paid, self.billed_ms)

    @property
    def gpu_ms(self) -> int:
        """GPU-milliseconds sold: billed time times the job's GPUs, over jobs with GPUs."""
        return sum(j.billed_ms * j.gpus for j in self.jobs if j.gpus)

    @property
    def cpu_ms(self) -> int:
        """Billed milliseconds of jobs that asked for no GPU."""
        return sum(j.billed_ms for j in self.jobs if j.gpus == 0)

    @property
    def rate_per_gpu_hour(self) -> Decimal | None:
        """Paid on GPU jobs per GPU-hour sold, in base units."""
        return _per_hour(sum(j.paid for j in self.jobs if j.gpus), self.gpu_ms)

    @property
    def rate_per_cpu_hour(self) -> Decimal | None:
        """Paid on CPU jobs per billed hour, in base units."""
        return _per_hour(sum(j.paid for j in self.jobs if j.gpus == 0), self.cpu_ms)

    @property
    def unknown_gpus(self) -> list[JobEarning]:
        """Jobs that billed time but whose spec (so GPU count) could not be read."""
        return [j for j in self.jobs if j.billed_ms and j.gpus is None]

    def view(self) -> dict[str, Any]:
        """The JSON answer: amounts in tokens (6 decimals) as strings, times in seconds."""
        rate, gpu_rate, cpu_rate = (
            self.rate_per_hour,
            self.rate_per_gpu_hour,
            self.rate_per_cpu_hour,
        )
        return {
            "address": self.address,
            "unit": "tokens",
            "from_block": self.from_block,
            "to_block": self.to_block,
            "since": self.since,
            "since_block": self.since_block,
            "paid": format_tokens(self.paid),
            "pending_jobs": len(self.pending),
            "pending_up_to": format_tokens(sum(j.price for j in self.pending)),
            "slashed": format_tokens(self.slashed),
            "claimable": format_tokens(self.claimable),
            "claimed": format_tokens(self.claimed),
            "claims": self.claims,
            "billed_seat_s": seconds(self.billed_ms),
            "rate_per_seat_hour": None if rate is None else format_tokens(rate),
            "gpu_s": seconds(self.gpu_ms),
            "rate_per_gpu_hour": None if gpu_rate is None else format_tokens(gpu_rate),
            "cpu_s": seconds(self.cpu_ms),
            "rate_per_cpu_hour": None if cpu_rate is None else format_tokens(cpu_rate),
            "gpus_unknown_jobs": [job_id_hex(j.job_id) for j in self.unknown_gpus],
            "jobs": [j.view() for j in self.jobs],
        }


def _per_hour(amount: int, ms: int) -> Decimal | None:
    return None if not ms else Decimal(amount) * MS_PER_HOUR / ms


def seconds(ms: int) -> str:
    return f"{(Decimal(ms) / 1000).normalize():f}"


def tally(
    events: Iterable[ChainEvent], address: str, *, since_block: int | None = None
) -> tuple[list[JobEarning], Wei, int]:
    """The provider's jobs (closed ones only when closed at ``since_block`` or later;
    pending ones always), the amount it claimed and how many claims, from ``events`` in
    chain order."""
    me = parse_address(address)
    jobs: dict[bytes, JobEarning] = {}
    claimed = claims = 0
    for e in events:
        if e.contract != "market":
            continue
        if e.name == "Claimed":
            if _is(e.args["account"], me) and _after(e.block_number, since_block):
                claimed += int(e.args["amount"])
                claims += 1
            continue
        if e.name == "ProviderAssigned":
            if _is(e.args["provider"], me):
                key = bytes(e.args["jobId"])
                seated = jobs.setdefault(key, JobEarning(JobId(key), [], e.block_number))
                seated.seats.append(int(e.args["seat"]))
                seated.price += int(e.args["price"])
            continue
        job = jobs.get(bytes(e.args["jobId"])) if "jobId" in e.args else None
        if job is None:
            continue
        if e.name == "ProviderSlashed" and _is(e.args["provider"], me):
            job.slashed += int(e.args["amount"])
        elif e.name in CLOSING:
            job.state, job.closed_block = CLOSING[e.name], e.block_number
            if e.name == "JobSettled":
                _settle(job, e.args)
    kept = [j for j in jobs.values() if _after(j.closed_block, since_block)]
    return kept, Wei(claimed), claims


def _settle(job: JobEarning, args: dict[str, Any]) -> None:
    figures = list(args["paidAndBilled"])
    for seat in job.seats:
        if int(args["winners"]) >> seat & 1:
            pay, billed = unpack_paid_and_billed(int(figures[seat]))
            job.won = True
            job.paid += pay
            job.billed_ms += billed


def _is(value: Any, me: Address) -> bool:
    return str(value).lower() == me.lower()


def _after(block: int | None, since_block: int | None) -> bool:
    """Whether something at ``block`` is inside the window (None: still pending)."""
    return block is None or since_block is None or block >= since_block


def parse_since(text: str, now: int) -> int:
    """A timestamp from ``7d``, ``24h``, ``30m`` (before ``now``) or an ISO date or time
    (UTC unless it names a zone)."""
    try:
        return now - parse_duration(text.strip())
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r}: give a duration like 7d, 24h or 30m, or an ISO date like 2025-01-31"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def read_events(
    chain: EarningsChain, start: int, end: int, chunk: int = MAX_RANGE
) -> Iterator[ChainEvent]:
    """The contracts' events in [start, end], ``chunk`` blocks per request."""
    while start <= end:
        stop = min(end, start + chunk - 1)
        yield from chain.get_events(start, stop)
        start = stop + 1


def first_block_at(chain: EarningsChain, timestamp: int, low: int, high: int) -> int:
    """The first block in [low, high] mined at ``timestamp`` or later (``high + 1`` if
    none): a binary search, as block times never decrease."""
    while low <= high:
        middle = (low + high) // 2
        if chain.block_timestamp(middle) >= timestamp:
            high = middle - 1
        else:
            low = middle + 1
    return low


def read_earnings(
    chain: EarningsChain,
    address: str,
    *,
    market: str,
    from_block: int = 0,
    since: str | None = None,
    gpus_of: GpusOf | None = None,
) -> Earnings:
    """``address``'s earnings on the market at ``market`` from its events since
    ``from_block``; ``since`` (a duration or ISO date) limits the closed jobs and claims.
    ``gpus_of`` (e.g. :func:`spec_gpus`) gives the GPUs of each job that billed time; without
    it every job's GPU count stays unknown."""
    me = parse_address(address)
    if not chain.provider_info(me).registered:
        raise NotAProvider(me, market)
    head = chain.block_number()
    start = max(from_block, 0)
    when = since_block = None
    if since is not None:
        when = parse_since(since, chain.now())
        since_block = first_block_at(chain, when, start, head)
    jobs, claimed, claims = tally(read_events(chain, start, head), me, since_block=since_block)
    if gpus_of is not None:
        billed = {j.job_id: chain.get_job(j.job_id).spec_cid for j in jobs if j.billed_ms}
        found = gpus_of(set(billed.values()))
        for job in jobs:
            if job.job_id in billed:
                job.gpus = found.get(billed[job.job_id])
    return Earnings(
        address=me,
        from_block=start,
        to_block=head,
        since=when,
        since_block=since_block,
        jobs=tuple(jobs),
        claimed=claimed,
        claims=claims,
        claimable=chain.claimable(me),
    )


async def spec_gpus(
    store: ContentStore, cids: Collection[str], *, timeout_s: float = SPEC_TIMEOUT_S
) -> dict[str, int | None]:
    """The GPUs each spec asks for, fetched from ``store`` (verified, at most
    :data:`~protocol.registry.MAX_SPEC_BYTES` each, ``timeout_s`` each,
    :data:`SPEC_FETCHES` at a time); None for a spec that is missing, late or invalid."""
    found: dict[str, int | None] = dict.fromkeys(cids)
    limit = trio.CapacityLimiter(SPEC_FETCHES)

    async def one(cid: str) -> None:
        async with limit:
            with trio.move_on_after(timeout_s):
                try:
                    data = await store.read_bytes(cid, max_size=MAX_SPEC_BYTES)
                    found[cid] = parse_spec(data).resources.gpus
                except GpuMarketError:
                    return

    async with trio.open_nursery() as nursery:
        for cid in found:
            nursery.start_soon(one, cid, name=f"spec {cid}")
    return found


def ipfs_gpus_of(api_url: str, *, timeout_s: float = SPEC_TIMEOUT_S) -> GpusOf:
    """A :data:`GpusOf` that reads the specs through the IPFS node at ``api_url``."""

    def lookup(cids: Collection[str]) -> Mapping[str, int | None]:
        async def fetch() -> dict[str, int | None]:
            async with KuboContentStore(api_url, timeout=timeout_s) as store:
                return await spec_gpus(store, cids, timeout_s=timeout_s)

        return trio.run(fetch)

    return lookup


def earnings_table(earnings: Earnings) -> Table:
    """One row per job: its seats, outcome, blocks, and amounts in tokens."""
    table = Table(
        title="jobs (amounts in tokens)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    for name in ("job", "seat", "outcome", "assigned", "closed"):
        table.add_column(name, no_wrap=True)
    for name in ("price", "paid", "slashed", "billed s", "GPUs", "GPU-s"):
        table.add_column(name, justify="right", overflow="fold")
    for job in earnings.jobs:
        v = job.view()
        table.add_row(
            v["job_id"][:6] + "…" + v["job_id"][-4:],
            ",".join(map(str, job.seats)),
            job.outcome,
            str(job.assigned_block),
            "-" if job.closed_block is None else str(job.closed_block),
            v["price"],
            v["paid"],
            v["slashed"],
            v["billed_s"],
            "?" if job.gpus is None else str(job.gpus),
            "-" if v["gpu_s"] is None else v["gpu_s"],
        )
    return table


def earnings_lines(earnings: Earnings) -> list[str]:
    """The totals as ``provider earnings`` prints them under its table."""
    view = earnings.view()
    window = f"blocks {earnings.from_block} to {earnings.to_block}"
    if earnings.since is not None:
        since = datetime.fromtimestamp(earnings.since, UTC).isoformat(timespec="seconds")
        window += f"; closed since {since} (block {earnings.since_block})"
    return [
        f"account:      {earnings.address}",
        f"read:         {window}",
        f"paid:         {view['paid']} tokens over {_count(len(earnings.closed), 'closed job')}",
        f"pending:      up to {view['pending_up_to']} tokens in "
        + _count(len(earnings.pending), "open job"),
        f"slashed:      {view['slashed']} tokens",
        f"claimable:    {view['claimable']} tokens now",
        f"claimed:      {view['claimed']} tokens in {_count(earnings.claims, 'claim')}",
        f"time sold:    {view['gpu_s']} GPU-seconds, {view['cpu_s']} CPU-seconds "
        f"({view['billed_seat_s']} billed seat-seconds)",
        "rate:         "
        + ", ".join(
            [
                _rate(view["rate_per_gpu_hour"], "GPU-hour"),
                _rate(view["rate_per_cpu_hour"], "CPU-hour"),
                _rate(view["rate_per_seat_hour"], "billed seat-hour"),
            ]
        ),
        *_unknown_lines(earnings),
    ]


def _rate(value: str | None, unit: str) -> str:
    return f"- per {unit}" if value is None else f"{value} tokens per {unit}"


def _unknown_lines(earnings: Earnings) -> list[str]:
    unknown = earnings.unknown_gpus
    if not unknown:
        return []
    return [
        f"unknown GPUs: {_count(len(unknown), 'job')} whose spec could not be read from IPFS "
        "count in seat-seconds only: "
        + ", ".join(job_id_hex(j.job_id) for j in unknown[:5])
        + (" …" if len(unknown) > 5 else "")
    ]


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")
