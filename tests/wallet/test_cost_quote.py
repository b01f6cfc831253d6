"""Job cost from chain events (and the coordinator's view), local byte records, quotes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from contracts.models import ChainEvent, escrow_of
from contracts.rules import pack_paid_and_billed, pay_for
from protocol.errors import GpuMarketError
from protocol.ids import format_tokens, parse_job_id
from protocol.views import JobView, Quote
from tests.wallet.views import job_json, option_json, quote_json, seat_json
from wallet import costs, quotes, records
from wallet.coordinator import CoordinatorClient
from wallet.quotes import SEATS, Funds, NoQuote, QuoteResult, auto_cap
from wallet.settings import WalletSettings

JOB = "0x" + "ab" * 32
REQUESTER = "0x" + "44" * 20
P0, P1, P2 = ("0x" + f"{i:02x}" * 20 for i in (0xA1, 0xB2, 0xC3))
CAP, FEE = 2_500_000, 100_000


def ev(name: str, block: int, index: int, tx: str = "0x01", **args: Any) -> ChainEvent:
    return ChainEvent(name, "market", {"jobId": bytes.fromhex(JOB[2:]), **args}, block, tx, index)


def created(redundancy: int = 2) -> ChainEvent:
    escrow = escrow_of(redundancy, CAP, FEE)
    return ev(
        "JobCreated", 10, 0, requester=REQUESTER, redundancy=redundancy, priceCap=CAP, fee=FEE,
        escrow=escrow,
    )  # fmt: skip


def assigned(seat: int, provider: str, price: int, rate: int) -> ChainEvent:
    return ev(
        "ProviderAssigned", 11, seat, "0x02", provider=provider, seat=seat, price=price,
        ratePerHour=rate, assignedAt=100,
    )  # fmt: skip


def test_a_settled_job_costs_pay_plus_fee_and_the_rest_is_refunded() -> None:
    rates = [3_600_000, 7_200_000, 3_600_000]
    billed = [1500, 1400, 0]
    pays = [pay_for(CAP, rates[i], billed[i]) for i in range(2)]
    escrow = escrow_of(2, CAP, FEE)
    refund = escrow - sum(pays) - FEE
    events = [
        # out of order on purpose: the chain order decides
        ev(
            "JobSettled", 20, 0, "0x03", result=b"", winners=0b011, slashMask=0b100,
            paidAndBilled=[pack_paid_and_billed(pays[0], billed[0]),
                           pack_paid_and_billed(pays[1], billed[1]), 0],
            refund=refund,
        ),
        created(),
        assigned(0, P0, CAP, rates[0]),
        assigned(1, P1, CAP, rates[1]),
        assigned(2, P2, CAP, rates[2]),
    ]  # fmt: skip
    cost = costs.cost_from_events(JOB, events)
    assert cost.state == "settled" and cost.escrow == escrow and cost.refund == refund
    assert [s.paid for s in cost.seats] == [*pays, 0]
    assert [s.billed_ms for s in cost.seats] == [1500, 1400, 0]
    assert [s.outcome for s in cost.seats] == ["paid", "paid", "slashed"]
    assert pays == [1500, 2800]  # ceil(rate x billed / 3.6e6)
    assert cost.fee == FEE and cost.escrow == cost.paid + cost.fee + cost.refund
    assert cost.spent == sum(pays) + FEE
    data = cost.to_json()
    assert data["paid"] == str(sum(pays)) and data["seats"][1]["paid"] == "2800"
    assert data["units"]["tokens"].startswith("token units")
    assert costs.cost_cell(cost) == f"{format_tokens(sum(pays) + FEE)} spent"


def test_a_cancelled_job_refunds_everything_and_an_open_one_holds_its_escrow() -> None:
    open_job = costs.cost_from_events(JOB, [created(1)])
    assert open_job.refund is None and open_job.spent is None and open_job.state == "open"
    assert costs.cost_cell(open_job) == f"{format_tokens(escrow_of(1, CAP, FEE))} escrowed"
    cancelled = costs.cost_from_events(
        JOB, [created(1), ev("JobCancelled", 12, 0, refund=escrow_of(1, CAP, FEE))]
    )
    assert cancelled.state == "cancelled" and cancelled.spent == 0 and cancelled.fee == 0
    with pytest.raises(costs.CostUnavailable):
        costs.cost_from_events(JOB, [assigned(0, P0, CAP, 1)])


def test_the_coordinator_view_stands_in_for_the_chain() -> None:
    view = job_json(
        job_id=JOB,
        requester=REQUESTER,
        state="settled",
        fee=str(FEE),
        refund="1000",
        providers=[
            seat_json(0, address=P0, price="9", rate_per_hour="5", assigned_at=1,
                      billed_ms=10, pay="7", outcome="paid"),
            seat_json(1, address=P1, price="9", rate_per_hour="5", assigned_at=None,
                      billed_ms=None, pay=None, state="declined"),
        ],
    )  # fmt: skip
    cost = costs.cost_from_view(JobView.model_validate(view))
    assert cost.source == "coordinator" and [s.provider for s in cost.seats] == [P0]
    assert cost.escrow == 7 + FEE + 1000 and cost.paid == 7


def test_bytes_come_from_the_wallets_records_or_are_unknown(tmp_path: Path) -> None:
    settings = WalletSettings(keystore_dir=tmp_path / "keystores")
    job = parse_job_id(JOB)
    cost = costs.cost_from_events(JOB, [created()])
    assert costs._with_bytes(settings, job, cost).bytes_uploaded is None
    assert cost.bytes_downloaded is None
    records.update(settings, job, bytes_uploaded=1234)
    cost = costs._with_bytes(settings, job, costs.cost_from_events(JOB, [created()]))
    assert (cost.bytes_uploaded, cost.bytes_downloaded) == (1234, 0)
    records.add_bytes(settings, job, "bytes_downloaded", 10)
    records.add_bytes(settings, job, "bytes_downloaded", 5)
    assert records.read(settings, job)["bytes_downloaded"] == 15
    assert (tmp_path / "jobs" / f"{JOB}.json").exists()


def test_totals_add_decided_jobs_and_hold_open_ones() -> None:
    totals = costs.Totals(REQUESTER, 0)
    settled = costs.cost_from_events(
        JOB, [created(1), ev("JobCancelled", 12, 0, refund=escrow_of(1, CAP, FEE))]
    )
    settled.gas_wei, settled.bytes_uploaded = 21_000 * 10**9, 100
    totals.add(settled)
    totals.add(costs.cost_from_events(JOB, [created(2)]))
    assert totals.jobs == 2 and totals.refund == escrow_of(1, CAP, FEE)
    assert totals.held == escrow_of(2, CAP, FEE) and totals.bytes_unknown == 1
    assert totals.to_json()["gas_eth"] == "0.000021"


def test_since_periods() -> None:
    assert costs.parse_since("7d") == 7 * 86400 and costs.parse_since("12h") == 43200
    for bad in ("7", "d", "-1d", "7w"):
        with pytest.raises(GpuMarketError):
            costs.parse_since(bad)


def quote_result(prices: list[int], *, balance: int | None = None) -> QuoteResult:
    market = quote_json(
        [
            option_json("auto", 1, []),
            option_json("2", 2, prices, requested=True, filtered={"busy (no free job slot)": 3}),
            option_json("3", 3, []),
        ],
        price_cap=str(CAP),
    )
    result = QuoteResult(Path("job.yaml"), FEE, Quote.model_validate(market))
    result.escrow = {label: escrow_of(n, CAP, FEE) for label, n in SEATS.items()}
    if balance is not None:
        result.funds = Funds(REQUESTER, balance, 0, 10**18)
    return result


def test_auto_cap_is_the_dearest_match_plus_margin_within_the_spec_cap() -> None:
    assert auto_cap(quote_result([1_000_000, 1_500_000]), 0.2) == 1_800_000
    assert auto_cap(quote_result([1_000_000, 1_500_000]), 0.0) == 1_500_000
    assert auto_cap(quote_result([2_400_000]), 0.2) == CAP
    with pytest.raises(NoQuote, match="busy"):
        auto_cap(quote_result([]), 0.2)
    with pytest.raises(GpuMarketError):
        auto_cap(quote_result([1]), -0.1)


def test_escrow_and_affordability_per_redundancy_choice() -> None:
    escrow_2 = escrow_of(2, CAP, FEE)
    assert escrow_2 == 4 * CAP + FEE
    result = quote_result([1], balance=escrow_2)
    assert result.affordable("2") is True and result.affordable("3") is False
    data = result.to_json()
    assert [o["escrow"] for o in data["options"]] == [
        str(escrow_of(n, CAP, FEE)) for n in (1, 2, 3)
    ]
    assert data["funds"]["balance"] == str(escrow_2)
    assert quote_result([1]).affordable("2") is None


def test_phase_lines_show_each_phase_since_the_first_and_the_one_before() -> None:
    from wallet.job_cli import phase_lines

    lines = phase_lines({"matched": 100.5, "queued": 100.0, "settle_tx_mined": 103.25})
    assert [line.split()[0] for line in lines] == ["queued", "matched", "settle_tx_mined"]
    assert lines[1].split()[1:] == ["+0.500", "s", "(+0.500", "s)"]
    assert lines[2].split()[1:] == ["+3.250", "s", "(+2.750", "s)"]
    assert phase_lines({}) == []


def test_a_quote_tells_the_coordinator_how_large_the_local_inputs_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "job"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "matmul", folder)
    (folder / "weights.bin").write_bytes(bytes(5000))
    asked: list[int] = []

    def quote(self: CoordinatorClient, spec_text: str, *, input_bytes: int = 0) -> Quote:
        asked.append(input_bytes)
        return Quote.model_validate(quote_json([]))

    monkeypatch.setattr(CoordinatorClient, "quote", quote)
    settings = WalletSettings(coordinator_url="http://127.0.0.1:9", keystore_dir=tmp_path / "k")
    result = quotes.quote(settings, folder / "job.yaml")
    assert result.market.capable == 3
    # The spec's one input is its own folder: every file in it, the new one included.
    assert asked == [sum(p.stat().st_size for p in folder.iterdir())]
