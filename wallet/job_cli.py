"""``gpumarket job``: submit a job, follow it, read its status, logs and explanation, fetch
its verified result, cancel or reclaim it. Importing this module adds these commands to the
``job`` group of :mod:`wallet.cli`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Column, Table

from protocol.errors import ConfigError, GpuMarketError, exits_on_error
from protocol.ids import JobId, format_tokens, job_id_hex, parse_job_id
from protocol.views import JobEvent, JobView, describe_checks
from wallet import costs, jobs, keys, quotes
from wallet.cli import (
    AccountOpt,
    Devnet,
    JobArg,
    JsonOpt,
    PasswordFile,
    _emit,
    _ms,
    _prompt,
    _settings,
    err,
    job_app,
    out,
)
from wallet.coordinator import CoordinatorClient
from wallet.settings import WalletSettings, check_pin_to

__all__ = ["job_app", "phase_lines"]

PinToOpt = Annotated[
    str | None,
    typer.Option(
        "--pin-to",
        help="A pinning IPFS node (its Kubo RPC API URL; default $WALLET_PIN_TO) that also "
        "keeps the job's uploads and its verified result, pinned.",
    ),
]


def _with_pin_to(settings: WalletSettings, pin_to: str | None) -> WalletSettings:
    if pin_to is None:
        return settings
    try:
        return settings.model_copy(update={"pin_to": check_pin_to(pin_to)})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


# --------------------------------------------------------------------------- job
@job_app.command("submit")
@exits_on_error
def job_submit(
    spec: Annotated[Path, typer.Argument(help="Job spec YAML.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it ends.")] = False,
    fee: Annotated[str, typer.Option(help="Coordinator fee in tokens.")] = jobs.DEFAULT_FEE,
    cap: Annotated[
        str | None,
        typer.Option(help="'auto': the price cap from a quote (dearest match + margin)."),
    ] = None,
    cap_margin: Annotated[float, typer.Option(help="Margin over the quote (--cap auto).")] = 0.2,
    pin_to: PinToOpt = None,
    devnet: Devnet = None,
    account: AccountOpt = None,
    password_file: PasswordFile = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate SPEC, upload its inputs, escrow payment in one transaction, notify the
    coordinator; with --wait follow the job live until it ends. With a pinning node
    (--pin-to), the inputs are pinned there too, and so is the result: once the job ends
    with --wait, else by `job result`."""
    settings = _with_pin_to(_settings(devnet, account, password_file), pin_to)
    price_cap = None
    if cap is not None:
        if cap != "auto":
            raise GpuMarketError(f"--cap takes 'auto' (set a fixed cap in the spec): {cap!r}")
        price_cap = quotes.auto_cap(quotes.quote(settings, spec, fee=fee), cap_margin)
    identity = keys.unlock(settings, _prompt)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=err,
        transient=True,
        disable=json_out,
    ) as bar:
        task = bar.add_task("uploading", total=None)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total or None)

        def warn(message: str) -> None:
            if not json_out:
                err.print(f"[yellow]warning:[/yellow] {message}")

        submitted = jobs.submit(
            settings,
            identity,
            spec,
            fee=fee,
            progress=progress,
            price_cap=price_cap,
            warn=warn,
        )
    if not json_out:
        out.print(
            f"job {job_id_hex(submitted.job_id)} created "
            f"(escrow {format_tokens(submitted.escrow)}, gas {submitted.gas_used}, "
            f"spec {submitted.spec_cid})"
        )
        if submitted.pinned_at is not None:
            out.print(f"inputs pinned at {submitted.pinned_at}")
    view: JobView | None = None
    result_pinned_at: str | None = None
    if wait:

        def show(event: JobEvent) -> None:
            if not json_out:
                at = event.at
                stamp = time.strftime("%H:%M:%S", time.localtime(at)) if at else "--:--:--"
                detail = json.dumps(event.detail, default=str)
                out.print(f"  {stamp} [bold]{event.state}[/bold] {detail[:120]}")

        view = jobs.follow(settings, submitted.job_id, show)
        if not json_out:
            out.print(f"job {view.state}: result {view.result_cid}")
        if submitted.pinned_at is not None and view.state in ("settled", "finalized"):
            result_pinned_at = jobs.pin_job_result(settings, submitted.job_id).pinned_at
            if not json_out:
                out.print(f"result pinned at {result_pinned_at}")
    if json_out:
        _emit(
            {
                "job_id": job_id_hex(submitted.job_id),
                "spec_cid": submitted.spec_cid,
                "inputs": submitted.input_cids,
                "escrow": str(format_tokens(submitted.escrow)),
                "price_cap": None if price_cap is None else str(price_cap),
                "tx": submitted.tx_hash,
                "warnings": list(submitted.warnings),
                "pinned_at": submitted.pinned_at,
                "result_pinned_at": result_pinned_at,
                "job": None if view is None else view.model_dump(mode="json"),
            }
        )


@job_app.command("status")
@exits_on_error
def job_status(job: JobArg, devnet: Devnet = None, json_out: JsonOpt = False) -> None:
    """The job's state, providers and result as the coordinator sees it."""
    settings = _settings(devnet)
    with CoordinatorClient(settings.need("coordinator_url")) as client:
        view = client.job(parse_job_id(job))
    if json_out:
        _emit(view)
        return
    out.print(f"job {view.job_id}: [bold]{view.state}[/bold]")
    table = Table("provider", "state", "price", "result", "outcome")
    for p in view.providers:
        table.add_row(
            p.address,
            p.state,
            format_tokens(int(p.price)),
            str(p.result_cid),
            str(p.outcome),
        )
    out.print(table)
    if view.result_cid:
        out.print(f"result: {view.result_cid}")
    if view.failure is not None:
        out.print(f"[red]failure:[/red] {view.failure.model_dump()}")


LIST_TABLE_WIDTH = 170
"""Columns `job list` needs for its table with whole job ids and result CIDs."""


@job_app.command("list")
@exits_on_error
def job_list(devnet: Devnet = None, account: AccountOpt = None, json_out: JsonOpt = False) -> None:
    """Jobs of the chosen account."""
    settings = _settings(devnet, account)
    address = keys.address_of(settings, _prompt)
    with CoordinatorClient(settings.need("coordinator_url")) as client:
        views = client.jobs(address)
    if json_out:
        _emit(views)
        return
    try:
        spent = costs.costs_of(settings, [parse_job_id(v.job_id) for v in views])
    except GpuMarketError:
        spent = {}  # the chain is out of reach: the list still shows
    rows = []
    for v in views:
        c = spent.get(v.job_id)
        rows.append(
            (v.job_id, v.state, "-" if c is None else costs.cost_cell(c), v.result_cid or "-")
        )
    # The id is what every other command takes: always whole. A terminal too narrow for
    # the table gets one short block per job instead.
    if out.width < LIST_TABLE_WIDTH:
        for job_id, state, cost, result in rows:
            out.print(f"[bold]{job_id}[/bold] {state}\n  cost {cost}\n  result {result}")
        return
    table = Table(Column("job", no_wrap=True), "state", "cost (tokens)", "result")
    for row in rows:
        table.add_row(*row)
    out.print(table)


@job_app.command("logs")
@exits_on_error
def job_logs(
    job: JobArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")
    ] = False,
    devnet: Devnet = None,
    account: AccountOpt = None,
    password_file: PasswordFile = None,
    json_out: JsonOpt = False,
) -> None:
    """The job's logs from its providers (signed by your key: only the requester may read)."""

    settings = _settings(devnet, account, password_file)
    seen = 0
    identity = keys.unlock(settings, _prompt)
    job_id = parse_job_id(job)
    with CoordinatorClient(settings.need("coordinator_url")) as client:
        while True:
            lines = client.logs(job_id, identity.private_key)
            for line in lines[seen:]:
                if json_out:
                    _emit(line)
                else:
                    out.print(f"[dim]{line.provider[:10]}[/dim] {line.text}")
            seen = len(lines)
            if not follow or client.job(job_id).state in jobs.TERMINAL:
                break
            time.sleep(1.0)


@job_app.command("result")
@exits_on_error
def job_result(
    job: JobArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to create.")],
    devnet: Devnet = None,
    account: Annotated[
        str | None,
        typer.Option(
            "--account", "-a", help="Only if this account (name or address) submitted the job."
        ),
    ] = None,
    password_file: PasswordFile = None,
    pin_to: PinToOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Download the verified result; every byte is checked against the result CID. With a
    pinning node (--pin-to, $WALLET_PIN_TO, or the one the job's submit named) the result
    is pinned there too."""
    settings = _with_pin_to(_settings(devnet, account, password_file), pin_to)
    if account is not None:
        _check_requester(settings, parse_job_id(job))
    fetched = jobs.fetch_result(settings, parse_job_id(job), output)
    if json_out:
        _emit(
            {
                "result_cid": fetched.cid,
                "path": str(fetched.path),
                "source": fetched.source,
                "pinned_at": fetched.pinned_at,
            }
        )
    else:
        out.print(
            f"verified result {fetched.cid} (from {fetched.source}) written to {fetched.path}"
        )
        if fetched.pinned_at is not None:
            out.print(f"pinned at {fetched.pinned_at}")


@job_app.command("explain")
@exits_on_error
def job_explain(job: JobArg, devnet: Devnet = None, json_out: JsonOpt = False) -> None:
    """Why each candidate provider won or lost the match, what each seat was billed and
    paid, and when the job reached each phase (queued, matched, assign transaction mined,
    delivered, all committed, all revealed, settle transaction mined)."""
    settings = _settings(devnet)
    with CoordinatorClient(settings.need("coordinator_url")) as client:
        data = client.explain(parse_job_id(job))
    if json_out:
        _emit(data)
        return
    table = Table("provider", "score", "chosen", "reason", "speed (latest challenges)")
    now = time.time()
    for c in data.candidates:
        table.add_row(
            c.address,
            f"{c.score:.4g}" if c.score is not None else "-",
            "yes" if c.chosen else "",
            c.reason,
            describe_checks(c.checks, now),
        )
    out.print(table)
    seats = data.seats
    if seats:
        bills = Table(
            "seat",
            "provider",
            "price",
            "rate/hour",
            "runtime",
            "billed",
            "paid",
            "outcome",
            title="seats (prices in tokens; the winners are paid for their billed runtime)",
        )
        for s in seats:
            bills.add_row(
                str(s.seat),
                s.address,
                format_tokens(int(s.price)),
                format_tokens(int(s.rate_per_hour)),
                _ms(s.runtime_ms),
                _ms(s.billed_ms),
                format_tokens(int(s.pay)) if s.pay is not None else "-",
                (s.outcome or "-")
                + (f" (burned {format_tokens(int(s.slashed))})" if s.slashed else ""),
            )
        out.print(bills)
    for d in data.declines:
        out.print(f"seat {d.seat} declined by {d.address}: {d.reason}")
    timeline = phase_lines(data.phases)
    if timeline:
        out.print("phases (the coordinator's clock; seconds since it learned of the job):")
        for line in timeline:
            out.print(f"  {line}")


def phase_lines(phases: dict[str, float]) -> list[str]:
    """A job's phases in order, each with its time since the first and since the one before."""
    ordered = sorted(phases.items(), key=lambda kv: kv[1])
    if not ordered:
        return []
    start = previous = ordered[0][1]
    lines = []
    for name, at in ordered:
        since_first = f"+{at - start:.3f}"
        lines.append(f"{name:<16} {since_first:>9} s  ({at - previous:+.3f} s)")
        previous = at
    return lines


def _check_requester(settings: WalletSettings, job_id: JobId) -> None:
    """Refuse a job the chosen account did not submit (``job result -a NAME``)."""
    address = keys.address_of(settings, _prompt)
    with CoordinatorClient(settings.need("coordinator_url")) as client:
        requester = client.job(job_id).requester
    if requester.lower() != address.lower():
        raise GpuMarketError(
            f"job {job_id_hex(job_id)} was submitted by {requester}, not by {address}; "
            "drop --account to fetch it anyway"
        )


@job_app.command("cancel")
@exits_on_error
def job_cancel(
    job: JobArg,
    devnet: Devnet = None,
    account: AccountOpt = None,
    password_file: PasswordFile = None,
) -> None:
    """Cancel a job nobody was seated on, or reclaim the escrow of one never decided by its
    settle deadline (works with the coordinator gone)."""
    settings = _settings(devnet, account, password_file)
    identity = keys.unlock(settings, _prompt)
    outcome = jobs.cancel_or_reclaim(settings, identity, parse_job_id(job))
    if outcome == "aborted":
        out.print(f"job {job}: aborted by its coordinator; the escrow is already credited back")
    else:
        out.print(f"job {job}: {outcome}")
