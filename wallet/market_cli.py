"""Money in and out on the command line: ``gpumarket market providers``, ``job quote`` and
``job cost``. Importing this module adds ``quote`` and ``cost`` to the ``job`` group (and is
how ``gpumarket_cli`` gets the ``market`` group)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from protocol.errors import GpuMarketError, exits_on_error
from protocol.ids import format_tokens, parse_job_id
from protocol.views import ago
from wallet import costs, dashboard, jobs, keys, market, quotes
from wallet.cli import (
    AccountOpt,
    Devnet,
    JsonOpt,
    PasswordFile,
    _emit,
    _ms,
    _prompt,
    _settings,
    job_app,
    out,
)

market_app = typer.Typer(
    help=(
        "The market as a requester sees it.\n\n"
        "  gpumarket market providers --devnet .devnet/state.json"
    ),
    no_args_is_help=True,
)

UNITS = "prices in tokens per GPU-hour and per CPU-hour (a seat of a job asking for no GPU)"


def _size(value: int | None) -> str:
    return "unknown" if value is None else f"{value} bytes"


# ------------------------------------------------------------------------ market
@market_app.command("providers")
@exits_on_error
def market_providers(
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = market.DEFAULT_LIMIT,
    devnet: Devnet = None,
    json_out: JsonOpt = False,
) -> None:
    """The coordinator's live book, cheapest GPU-hour first."""
    data = market.providers(_settings(devnet), limit=limit)
    if json_out:
        _emit(data)
        return
    rows = data.providers
    table = Table(
        "provider",
        "GPUs",
        "TFLOPS",
        "memory",
        "price/GPU-h",
        "price/CPU-h",
        "reputation",
        "free slots",
        "driver / CUDA / torch",
        "last seen",
        title=f"{len(rows)} of {data.total} providers ({UNITS})",
    )
    now = time.time()
    for r in rows:
        table.add_row(
            r.address,
            f"{r.gpu_count} x {r.gpu_model}",
            market.tflops(r, now),
            market.gib(r.memory_bytes),
            f"{format_tokens(int(r.price_per_gpu_hour))} tokens",
            f"{format_tokens(int(r.price_per_cpu_hour))} tokens",
            f"{r.reputation:.3f}",
            str(r.free_slots),
            market.software(r),
            ago(r.last_seen, now),
        )
    out.print(table)
    for r in rows:
        if r.unreachable:
            out.print(f"[yellow]unreachable[/yellow] {r.address}: {r.unreachable}")


# --------------------------------------------------------------------------- quote
@job_app.command("quote")
@exits_on_error
def job_quote(
    spec: Annotated[Path, typer.Argument(help="Job spec YAML.")],
    fee: Annotated[str, typer.Option(help="Coordinator fee in tokens.")] = jobs.DEFAULT_FEE,
    devnet: Devnet = None,
    account: AccountOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """What SPEC would get if submitted now, paying nothing: matching providers and why
    others do not, price per redundancy choice, escrow, expected start, affordability."""
    result = quotes.quote(_settings(devnet, account), spec, fee=fee)
    if json_out:
        _emit(result.to_json())
        return
    m = result.market
    out.print(
        f"[bold]{m.name}[/bold]: {m.gpus} GPU(s) for {m.duration_s} s, cap "
        f"{costs.amount(int(m.price_cap))} per provider, fee {costs.amount(result.fee)}; "
        f"{m.providers_in_book} providers in the book"
    )
    table = Table(
        "redundancy", "start", "providers (price)", "total", "escrow", "affordable", "left out"
    )
    for o in m.options:
        label = o.redundancy + (" *" if o.requested else "")
        chosen = "\n".join(f"{p.address} ({costs.amount(int(p.price))})" for p in o.providers)
        can = result.affordable(o.redundancy)
        table.add_row(
            label,
            o.start,
            chosen or "-",
            costs.amount(None if o.total is None else int(o.total)),
            costs.amount(result.escrow[o.redundancy]),
            "?" if can is None else "yes" if can else "[red]no[/red]",
            ", ".join(f"{n} {r}" for r, n in o.filtered.items()) or "-",
        )
    out.print(table)
    warning = jobs.no_capable_provider(m)
    if warning is not None:
        out.print(f"[yellow]warning:[/yellow] {warning}")
    requested = result.requested()
    if requested.candidates:
        why = Table("provider", "why not chosen", title="the others (spec's redundancy)")
        for c in requested.candidates:
            why.add_row(c.address, c.reason)
        out.print(why)
    if result.funds is not None:
        f = result.funds
        out.print(
            f"{f.address}: balance {costs.amount(f.balance)}, allowance to the market "
            f"{costs.amount(f.allowance)} (createJob signs a permit for the escrow), "
            f"gas money {costs.eth(f.eth_wei)} ETH"
        )
    out.print("* the spec's choice; auto seats one primary (a spot checker, if any, is paid")
    out.print("  from the escrow's spare seats)")


# ---------------------------------------------------------------------------- cost
@job_app.command("cost")
@exits_on_error
def job_cost(
    job: Annotated[str | None, typer.Argument(help="Job id; omit with --since.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Totals over the account's jobs of this period (7d, 12h).")
    ] = None,
    devnet: Devnet = None,
    account: AccountOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """What a job cost (escrow, pay per provider, fee, refund, gas, bytes), read from the
    chain; with --since, totals over the account's jobs."""
    settings = _settings(devnet, account)
    if since is not None:
        who = keys.address_of(settings, _prompt)
        totals = costs.totals_since(settings, who, costs.parse_since(since))
        _emit(totals.to_json()) if json_out else _show_totals(totals, since)
        return
    if job is None:
        raise GpuMarketError("name a job, or pass --since 7d for totals")
    cost = costs.job_cost(settings, parse_job_id(job))
    _emit(cost.to_json()) if json_out else _show_cost(cost)


@job_app.command("costs-link")
@exits_on_error
def job_costs_link(
    hours: Annotated[int, typer.Option(help="How far back the page looks.", min=1)] = 24 * 7,
    devnet: Devnet = None,
    account: AccountOpt = None,
    password_file: PasswordFile = None,
    json_out: JsonOpt = False,
) -> None:
    """A link that opens your own costs on the coordinator's dashboard (it carries your
    request signature: anyone holding it can read those costs until it expires)."""
    settings = _settings(devnet, account, password_file)
    identity = keys.unlock(settings, _prompt)
    link = dashboard.costs_link(settings.need("coordinator_url"), identity.private_key, hours=hours)
    if json_out:
        _emit({"url": link, "valid_s": dashboard.VALID_S})
        return
    out.print(link)
    out.print(f"[dim]valid for about {dashboard.VALID_S // 60} minutes[/dim]")


def _show_cost(c: costs.JobCost) -> None:
    out.print(f"job {c.job_id}: [bold]{c.state}[/bold] (from the {c.source})")
    table = Table("seat", "provider", "price", "billed", "paid", "outcome", title="providers")
    for s in c.seats:
        table.add_row(
            str(s.seat),
            s.provider,
            costs.amount(s.price),
            _ms(s.billed_ms),
            costs.amount(s.paid),
            s.outcome,
        )
    out.print(table)
    lines = [
        ("escrowed", costs.amount(c.escrow)),
        ("paid to providers", costs.amount(c.paid)),
        ("coordinator fee", costs.amount(c.fee)),
        ("refund", costs.amount(c.refund)),
        ("spent", costs.amount(c.spent)),
        ("gas", "unknown" if c.gas_wei is None else f"{costs.eth(c.gas_wei)} ETH"),
        ("uploaded", _size(c.bytes_uploaded)),
        ("downloaded", _size(c.bytes_downloaded)),
    ]
    for label, value in lines:
        out.print(f"{label:>18}: {value}")


def _show_totals(t: costs.Totals, since: str) -> None:
    out.print(f"{t.requester}: {t.jobs} jobs in the last {since}")
    lines = [
        ("escrowed", costs.amount(t.escrow)),
        ("paid to providers", costs.amount(t.paid)),
        ("coordinator fees", costs.amount(t.fee)),
        ("refunded", costs.amount(t.refund)),
        ("still escrowed", costs.amount(t.held)),
        ("gas", f"{costs.eth(t.gas_wei)} ETH"),
        ("uploaded", f"{t.bytes_uploaded} bytes"),
        ("downloaded", f"{t.bytes_downloaded} bytes"),
    ]
    for label, value in lines:
        out.print(f"{label:>18}: {value}")
    if t.bytes_unknown:
        out.print(
            f"{'':>18}  (bytes unknown for {t.bytes_unknown} jobs this wallet did not record)"
        )
