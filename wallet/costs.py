"""What a job cost its requester, read from the chain so it is right on any machine.

The figures come from the job's own events: ``JobCreated`` (escrow, fee), ``ProviderAssigned``
(each seat's price and rate), ``JobSettled`` (``paidAndBilled`` per seat, refund) or the
refund of ``JobCancelled`` / ``JobReclaimed`` / ``JobAborted``. Gas is what the requester's
own transactions of the job burned (``gasUsed x effectiveGasPrice``). Bytes come from the
wallet's local records (:mod:`wallet.records`) and are unknown for jobs it has none of.
When the chain cannot be read, the coordinator's view (``GET /jobs/{id}``) stands in.

For a decided job ``escrow == paid + fee + refund`` (the fee is 0 when the contract did
not pay it to the coordinator).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from contracts.chain import Web3Chain
from contracts.models import ChainEvent
from contracts.rules import unpack_paid_and_billed
from protocol.errors import GpuMarketError
from protocol.ids import JobId, format_tokens, job_id_hex, parse_address
from protocol.units import parse_duration
from protocol.views import JobView
from wallet import records
from wallet.coordinator import CoordinatorClient, CoordinatorRequestError
from wallet.settings import WalletSettings

COST_EVENTS = (
    "JobCreated",
    "ProviderAssigned",
    "JobSettled",
    "JobCancelled",
    "JobReclaimed",
    "JobAborted",
    "JobFinalized",
)
REFUNDS = {"JobCancelled": "cancelled", "JobReclaimed": "reclaimed", "JobAborted": "aborted"}
REQUESTER_TXS = ("JobCreated", "JobCancelled", "JobReclaimed", "JobFinalized")
"""Events of transactions the requester may have sent (checked against each tx's sender)."""
READ_ONLY_KEY = "0x" + "11" * 32
"""Reads need no real key."""
WEI_PER_ETH = Decimal(10) ** 18


class CostUnavailable(GpuMarketError):
    def __init__(self, job: str, why: str) -> None:
        super().__init__(f"no cost figures for job {job}: {why}")


@dataclass(frozen=True)
class SeatCost:
    seat: int
    provider: str
    price: int
    rate_per_hour: int
    billed_ms: int | None = None
    paid: int | None = None
    outcome: str = "running"


@dataclass
class JobCost:
    """Amounts in token units (6 decimals), gas in wei; None where not known (yet)."""

    job_id: str
    requester: str
    state: str
    escrow: int | None
    fee: int | None
    """The fee the coordinator got (at creation: the fee offered, until decided)."""
    refund: int | None
    seats: list[SeatCost] = field(default_factory=list)
    gas_wei: int | None = None
    gas_txs: list[str] = field(default_factory=list)
    bytes_uploaded: int | None = None
    bytes_downloaded: int | None = None
    source: str = "chain"
    created_block: int = 0

    @property
    def paid(self) -> int:
        return sum(s.paid or 0 for s in self.seats)

    @property
    def spent(self) -> int | None:
        """What the job cost in tokens: the escrow less the refund (None until decided)."""
        if self.escrow is None or self.refund is None:
            return None
        return self.escrow - self.refund

    def to_json(self) -> dict[str, Any]:
        """Amounts as integer strings in token units, with human forms beside them."""
        data = asdict(self)
        for key in ("escrow", "fee", "refund", "gas_wei"):
            data[key] = None if data[key] is None else str(data[key])
        data["seats"] = [
            {**s, "price": str(s["price"]), "rate_per_hour": str(s["rate_per_hour"])}
            | {"paid": None if s["paid"] is None else str(s["paid"])}
            for s in data["seats"]
        ]
        spent = self.spent
        data["paid"] = str(self.paid)
        data["spent"] = None if spent is None else str(spent)
        data["units"] = {"tokens": "token units, 6 decimals", "gas": "wei"}
        data["gas_eth"] = None if self.gas_wei is None else eth(self.gas_wei)
        return data


def eth(wei: int) -> str:
    return f"{(Decimal(wei) / WEI_PER_ETH).normalize():f}"


def amount(value: int | None) -> str:
    """A token amount with its unit, or "-"."""
    return "-" if value is None else f"{format_tokens(value)} tokens"


def cost_cell(cost: JobCost) -> str:
    """``job list``'s cost column: spent once decided, else what is escrowed."""
    spent = cost.spent
    if spent is not None:
        return f"{format_tokens(spent)} spent"
    return "-" if cost.escrow is None else f"{format_tokens(cost.escrow)} escrowed"


def cost_from_events(job_id: str, events: Iterable[ChainEvent]) -> JobCost:
    """The job's cost from its market events (in chain order); raises when it has no
    ``JobCreated``."""
    ordered = sorted(events, key=lambda e: (e.block_number, e.log_index))
    created = next((e for e in ordered if e.name == "JobCreated"), None)
    if created is None:
        raise CostUnavailable(job_id, "the chain has no JobCreated event of it")
    a = created.args
    cost = JobCost(
        job_id=job_id,
        requester=parse_address(a["requester"]),
        state="open",
        escrow=int(a["escrow"]),
        fee=int(a["fee"]),
        refund=None,
        created_block=created.block_number,
    )
    seats: dict[int, SeatCost] = {}
    for e in ordered:
        if e.name == "ProviderAssigned":
            cost.state = "assigned"
            seats[int(e.args["seat"])] = SeatCost(
                int(e.args["seat"]),
                parse_address(e.args["provider"]),
                int(e.args["price"]),
                int(e.args["ratePerHour"]),
            )
        elif e.name == "JobSettled":
            cost.state = "settled"
            cost.refund = int(e.args["refund"])
            winners, slashed = int(e.args["winners"]), int(e.args["slashMask"])
            for i, packed in enumerate(e.args["paidAndBilled"]):
                if i not in seats:
                    continue
                pay, billed = unpack_paid_and_billed(int(packed))
                won = bool(winners >> i & 1)
                outcome = "paid" if won else "slashed" if slashed >> i & 1 else "released"
                seats[i] = SeatCost(
                    i,
                    seats[i].provider,
                    seats[i].price,
                    seats[i].rate_per_hour,
                    billed_ms=billed if won else 0,
                    paid=pay if won else 0,
                    outcome=outcome,
                )
        elif e.name in REFUNDS:
            cost.state = REFUNDS[e.name]
            cost.refund = int(e.args["refund"])
            seats = {i: SeatCost(**{**asdict(s), "outcome": "released"}) for i, s in seats.items()}
    cost.seats = [seats[i] for i in sorted(seats)]
    if cost.refund is not None and cost.escrow is not None:
        # What the coordinator really got: the escrow less pay and refund.
        cost.fee = cost.escrow - cost.paid - cost.refund
    return cost


def cost_from_view(view: JobView) -> JobCost:
    """The coordinator's figures, for when the chain cannot be read."""
    seats = [
        SeatCost(
            p.seat,
            p.address,
            int(p.price),
            int(p.rate_per_hour),
            billed_ms=p.billed_ms,
            paid=None if p.pay is None else int(p.pay),
            outcome=p.outcome or p.state,
        )
        for p in view.providers
        if p.assigned_at is not None  # seats that went on chain
    ]
    refund = None if view.refund is None else int(view.refund)
    fee = int(view.fee)
    paid = sum(s.paid or 0 for s in seats)
    return JobCost(
        job_id=view.job_id,
        requester=view.requester,
        state=view.state,
        escrow=None if refund is None else paid + fee + refund,
        fee=fee,
        refund=refund,
        seats=seats,
        source="coordinator",
    )


def read_only_chain(settings: WalletSettings) -> Web3Chain:
    return Web3Chain(settings.need("rpc_url"), settings.deployment(), READ_ONLY_KEY)


def _logs(chain: Web3Chain, topics: list[Any]) -> list[ChainEvent]:
    def get() -> Any:
        return chain.w3.eth.get_logs(
            {
                "fromBlock": 0,
                "toBlock": "latest",
                "address": chain.w3.to_checksum_address(chain.deployment.market),
                "topics": topics,
            }
        )

    logs = chain._read(get)
    events = [e for e in (chain.decoder.decode(log) for log in logs) if e is not None]
    return sorted(events, key=lambda e: (e.block_number, e.log_index))


def chain_events(chain: Web3Chain, job_ids: Sequence[JobId]) -> dict[str, list[ChainEvent]]:
    """Every cost event of ``job_ids``, by job id (hex), in one log query."""
    if not job_ids:
        return {}
    names = [chain.decoder.topic(n) for n in COST_EVENTS]
    ids = [job_id_hex(j) for j in job_ids]
    found: dict[str, list[ChainEvent]] = {i: [] for i in ids}
    for e in _logs(chain, [names, ids]):
        if e.job_id is not None:
            found.setdefault(job_id_hex(e.job_id), []).append(e)
    return found


def gas_of(chain: Web3Chain, requester: str, events: Iterable[ChainEvent]) -> tuple[int, list[str]]:
    """Gas (wei) of the requester's own transactions among ``events``, and their hashes."""
    txs = sorted({e.tx_hash for e in events if e.name in REQUESTER_TXS})
    total, mine = 0, []
    for tx in txs:
        receipt = chain._read(lambda tx=tx: chain.w3.eth.get_transaction_receipt(tx))
        if parse_address(receipt["from"]) != parse_address(requester):
            continue
        total += int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
        mine.append(tx)
    return total, mine


def _with_bytes(settings: WalletSettings, job_id: JobId, cost: JobCost) -> JobCost:
    record = records.read(settings, job_id)
    up, down = record.get("bytes_uploaded"), record.get("bytes_downloaded")
    cost.bytes_uploaded = None if up is None else int(up)
    # A job this wallet submitted and never fetched downloaded nothing; others: unknown.
    cost.bytes_downloaded = int(down) if down is not None else (0 if record else None)
    return cost


def job_cost(settings: WalletSettings, job_id: JobId) -> JobCost:
    """The job's cost from the chain; the coordinator's view when the chain cannot say."""
    key = job_id_hex(job_id)
    try:
        chain = read_only_chain(settings)
        events = chain_events(chain, [job_id])[key]
        cost = cost_from_events(key, events)
        cost.gas_wei, cost.gas_txs = gas_of(chain, cost.requester, events)
    except GpuMarketError as chain_error:
        try:
            with CoordinatorClient(settings.need("coordinator_url")) as client:
                cost = cost_from_view(client.job(job_id))
        except CoordinatorRequestError:
            raise chain_error from None
    return _with_bytes(settings, job_id, cost)


def costs_of(settings: WalletSettings, job_ids: Sequence[JobId]) -> dict[str, JobCost]:
    """Token figures of many jobs from one log query (no gas: that takes a receipt each)."""
    chain = read_only_chain(settings)
    out = {}
    for key, events in chain_events(chain, job_ids).items():
        try:
            out[key] = cost_from_events(key, events)
        except CostUnavailable:
            continue
    return out


@dataclass
class Totals:
    requester: str
    since: int
    """Unix time the window starts at."""
    jobs: int = 0
    escrow: int = 0
    paid: int = 0
    fee: int = 0
    refund: int = 0
    held: int = 0
    """Escrow of jobs not decided yet."""
    gas_wei: int = 0
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0
    bytes_unknown: int = 0
    """Jobs whose byte counts this wallet never recorded."""
    costs: list[JobCost] = field(default_factory=list)

    def add(self, cost: JobCost) -> None:
        self.jobs += 1
        self.costs.append(cost)
        self.escrow += cost.escrow or 0
        self.gas_wei += cost.gas_wei or 0
        if cost.refund is None:
            self.held += cost.escrow or 0
        else:
            self.paid += cost.paid
            self.fee += cost.fee or 0
            self.refund += cost.refund
        if cost.bytes_uploaded is None:
            self.bytes_unknown += 1
        else:
            self.bytes_uploaded += cost.bytes_uploaded
            self.bytes_downloaded += cost.bytes_downloaded or 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["costs"] = [c.to_json() for c in self.costs]
        for key in ("escrow", "paid", "fee", "refund", "held", "gas_wei"):
            data[key] = str(data[key])
        data["gas_eth"] = eth(self.gas_wei)
        data["units"] = {"tokens": "token units, 6 decimals", "gas": "wei"}
        return data


def parse_since(text: str) -> int:
    """Seconds in ``7d``, ``12h``, ``30m``, ``90s`` or ``1h30m`` (``protocol.units``)."""
    try:
        return parse_duration(text.strip().lower())
    except ValueError as exc:
        raise GpuMarketError(f"--since takes a duration like 7d or 12h: {exc}") from None


def totals_since(settings: WalletSettings, requester: str, seconds: int) -> Totals:
    """Every job ``requester`` created in the last ``seconds`` (by block time), added up."""
    chain = read_only_chain(settings)
    since = chain.now() - seconds
    who = "0x" + "00" * 12 + parse_address(requester)[2:].lower()
    created = _logs(chain, [chain.decoder.topic("JobCreated"), None, who])
    stamps: dict[int, int] = {}
    for e in created:
        if e.block_number not in stamps:
            block = chain._read(lambda n=e.block_number: chain.w3.eth.get_block(n))
            stamps[e.block_number] = int(block["timestamp"])
    ids = [e.job_id for e in created if e.job_id is not None and stamps[e.block_number] >= since]
    totals = Totals(parse_address(requester), since)
    events = chain_events(chain, ids)
    for job_id in ids:
        key = job_id_hex(job_id)
        cost = cost_from_events(key, events[key])
        cost.gas_wei, cost.gas_txs = gas_of(chain, cost.requester, events[key])
        totals.add(_with_bytes(settings, job_id, cost))
    return totals
