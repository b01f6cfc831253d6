"""``gpumarket wallet`` and ``gpumarket job``: the requester's command line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table

from protocol.errors import ConfigError, GpuMarketError, exits_on_error
from protocol.ids import JobId, format_tokens, job_id_hex, parse_job_id
from wallet import claims, costs, jobs, keys, quotes
from wallet.coordinator import CoordinatorClient
from wallet.settings import WalletSettings, check_pin_to

wallet_app = typer.Typer(
    help=(
        "Keys, balances and claims. Keystores are encrypted V3 files (scrypt), the format of "
        "Foundry's `cast wallet`: accounts in ~/.foundry/keystores are offered too. "
        "Passwords come from --password-file, WALLET_PASSWORD or a prompt.\n\n"
        "The market keeps refunds, pay and fees as claimable balances: `gpumarket wallet "
        "claim` moves them to your tokens."
    ),
    no_args_is_help=True,
)
job_app = typer.Typer(
    help=(
        "Submit jobs and get their verified results.\n\n"
        "\b\n"
        "gpumarket job submit examples/matmul/job.yaml --wait\n"
        "gpumarket job result JOB_ID -o result/\n\n"
        "Add --devnet .devnet/state.json to use a local devnet."
    ),
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)

Devnet = Annotated[
    Path | None,
    typer.Option(
        "--devnet",
        help="Take endpoints and contracts from a devnet state file.",
        envvar="WALLET_DEVNET_STATE",
    ),
]
AccountOpt = Annotated[str | None, typer.Option("--account", "-a", help="Account name or address.")]
PasswordFile = Annotated[
    Path | None, typer.Option("--password-file", help="File holding the keystore password.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
JobArg = Annotated[str, typer.Argument(help="Job id (0x followed by 64 hex digits).")]


def _settings(
    devnet: Path | None = None, account: str | None = None, password_file: Path | None = None
) -> WalletSettings:
    base = WalletSettings()
    updates: dict[str, Any] = {}
    if devnet is not None:
        updates["devnet_state"] = devnet
    if account is not None:
        updates["account"] = account
    if password_file is not None:
        updates["password_file"] = password_file
    return base.model_copy(update=updates).with_devnet()


def _prompt(label: str) -> str:
    return str(typer.prompt(label, hide_input=True))


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, default=str))


# ------------------------------------------------------------------------ wallet
@wallet_app.command("new")
@exits_on_error
def wallet_new(name: str, password_file: PasswordFile = None) -> None:
    """Create a new account NAME in the keystore directory."""
    settings = _settings(password_file=password_file)
    entry = keys.new_key(
        settings.keystore_dir, name, keys.read_password(settings, _prompt, confirm=True)
    )
    out.print(f"created {entry.name}: {entry.address} ({entry.path})")


@wallet_app.command("import")
@exits_on_error
def wallet_import(
    name: str,
    private_key_file: Annotated[
        Path | None, typer.Option(help="File holding the hex private key.")
    ] = None,
    keystore: Annotated[
        Path | None,
        typer.Option(help="An existing V3 JSON keystore, e.g. one `cast wallet new` wrote."),
    ] = None,
    password_file: PasswordFile = None,
) -> None:
    """Import an account as NAME: a private key read from a file (never from the command
    line), encrypted with a new password; or an existing keystore, unlocked once with its
    own password to check it and learn its address, then copied as it is."""
    settings = _settings(password_file=password_file)
    if (private_key_file is None) == (keystore is None):
        err.print("[red]error:[/red] give exactly one of --private-key-file FILE, --keystore FILE")
        raise typer.Exit(2)
    try:
        if keystore is not None:
            entry = keys.import_keystore(
                settings.keystore_dir, name, keystore, keys.read_password(settings, _prompt)
            )
        else:
            assert private_key_file is not None
            key = private_key_file.read_text().strip()
            entry = keys.import_key(
                settings.keystore_dir,
                name,
                key,
                keys.read_password(settings, _prompt, confirm=True),
            )
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot read {private_key_file}: {exc.strerror}")
        raise typer.Exit(1) from exc
    out.print(f"imported {entry.name}: {entry.address}")


@wallet_app.command("list")
@exits_on_error
def wallet_list(json_out: JsonOpt = False) -> None:
    """List the accounts in the keystore directory and Foundry's (~/.foundry/keystores)."""
    entries = keys.all_keys(WalletSettings())
    if json_out:
        _emit([{"name": e.name, "address": e.address, "path": str(e.path)} for e in entries])
        return
    table = Table("name", "address", "keystore")
    for e in entries:
        table.add_row(e.name, e.address or "(not recorded: `wallet address -a NAME`)", str(e.path))
    out.print(table)


@wallet_app.command("address")
@exits_on_error
def wallet_address(
    account: AccountOpt = None, password_file: PasswordFile = None, json_out: JsonOpt = False
) -> None:
    """Print the address of the chosen account (no password needed, except for a cast
    keystore that does not record its address)."""
    address = keys.address_of(_settings(account=account, password_file=password_file), _prompt)
    _emit({"address": address}) if json_out else typer.echo(address)


@wallet_app.command("balance")
@exits_on_error
def wallet_balance(
    devnet: Devnet = None, account: AccountOpt = None, json_out: JsonOpt = False
) -> None:
    """Token balance, what the market owes you (claimable) and ETH for gas."""
    settings = _settings(devnet, account)
    address = keys.address_of(settings, _prompt)
    from contracts.chain import Web3Chain

    chain = Web3Chain(
        settings.need("rpc_url"), settings.deployment(), claims.READ_ONLY_KEY
    )  # read-only calls need no real key
    token = chain.token_balance(address)
    owed = claims.claimable(chain, address).total
    eth = chain.w3.eth.get_balance(chain.w3.to_checksum_address(address))
    data = {
        "address": address,
        "token": str(format_tokens(token)),
        "claimable": str(format_tokens(owed)),
        "eth": str(eth / 10**18),
    }
    if json_out:
        _emit(data)
        return
    for k, v in data.items():
        out.print(f"{k:>10}: {v}")


@wallet_app.command("claim")
@exits_on_error
def wallet_claim(
    devnet: Devnet = None,
    account: AccountOpt = None,
    password_file: PasswordFile = None,
    json_out: JsonOpt = False,
) -> None:
    """Move everything the market owes the account (refunds, pay, fees) to its tokens, in
    one transaction. Works for requesters, providers and coordinators alike; with nothing
    claimable it says so and sends nothing."""
    settings = _settings(devnet, account, password_file)
    outcome = claims.claim_for(settings, _prompt)
    if json_out:
        _emit(outcome.as_json())
        return
    due = outcome.due
    if outcome.tx_hash is None:
        out.print(f"nothing to claim for {due.address}: the market owes it 0 tokens")
        return
    out.print(
        f"claimable for {due.address}: {format_tokens(due.total)} "
        f"(credit {format_tokens(due.credit)}, earnings {format_tokens(due.earnings)})"
    )
    out.print(
        f"claimed {format_tokens(outcome.claimed)}: tokens {format_tokens(outcome.tokens_before)} "
        f"-> {format_tokens(outcome.tokens_after)} (+{format_tokens(outcome.received)})"
    )
    out.print(f"tx {outcome.tx_hash} (gas {outcome.gas_used})")


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
    devnet: Devnet = None,
    account: AccountOpt = None,
    password_file: PasswordFile = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate SPEC, upload its inputs, escrow payment in one transaction, notify the
    coordinator; with --wait follow the job live until it ends."""
    settings = _settings(devnet, account, password_file)
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
    view: dict[str, Any] | None = None
    if wait:

        def show(event: dict[str, Any]) -> None:
            if not json_out:
                at = event.get("at")
                stamp = time.strftime("%H:%M:%S", time.localtime(at)) if at else "--:--:--"
                detail = json.dumps(event.get("detail", ""), default=str)
                out.print(f"  {stamp} [bold]{event.get('state')}[/bold] {detail[:120]}")

        view = jobs.follow(settings, submitted.job_id, show)
        if not json_out:
            out.print(f"job {view['state']}: result {view.get('result_cid')}")
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
                "job": view,
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
    out.print(f"job {view['job_id']}: [bold]{view['state']}[/bold]")
    table = Table("provider", "state", "price", "result", "outcome")
    for p in view.get("providers", []):
        table.add_row(
            p["address"],
            str(p.get("state")),
            format_tokens(int(p["price"])) if p.get("price") is not None else "-",
            str(p.get("result_cid")),
            str(p.get("outcome")),
        )
    out.print(table)
    if view.get("result_cid"):
        out.print(f"result: {view['result_cid']}")
    if view.get("failure"):
        out.print(f"[red]failure:[/red] {view['failure']}")


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
        spent = costs.costs_of(settings, [parse_job_id(v["job_id"]) for v in views])
    except GpuMarketError:
        spent = {}  # the chain is out of reach: the list still shows
    table = Table("job", "state", "cost (tokens)", "result")
    for v in views:
        c = spent.get(v["job_id"])
        cost = "-" if c is None else costs.cost_cell(c)
        table.add_row(v["job_id"], v["state"], cost, str(v.get("result_cid")))
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
                    out.print(f"[dim]{line['provider'][:10]}[/dim] {line['text']}")
            seen = len(lines)
            if not follow or client.job(job_id)["state"] in jobs.TERMINAL:
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
    pin_to: Annotated[
        str | None,
        typer.Option(
            "--pin-to",
            help="Also pin the verified result on this IPFS node (its Kubo RPC API URL; "
            "default $WALLET_PIN_TO).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Download the verified result; every byte is checked against the result CID."""
    settings = _settings(devnet, account, password_file)
    if pin_to is not None:
        try:
            settings = settings.model_copy(update={"pin_to": check_pin_to(pin_to)})
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
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
    table = Table("provider", "score", "chosen", "reason")
    for c in data.get("candidates", []):
        table.add_row(
            c["address"],
            f"{c.get('score', 0):.4g}" if c.get("score") is not None else "-",
            "yes" if c.get("chosen") else "",
            str(c.get("reason")),
        )
    out.print(table)
    seats = data.get("seats") or []
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
                str(s["seat"]),
                s["address"],
                format_tokens(int(s["price"])),
                format_tokens(int(s["rate_per_hour"])),
                _ms(s.get("runtime_ms")),
                _ms(s.get("billed_ms")),
                format_tokens(int(s["pay"])) if s.get("pay") is not None else "-",
                (s.get("outcome") or "-")
                + (f" (burned {format_tokens(int(s['slashed']))})" if s.get("slashed") else ""),
            )
        out.print(bills)
    for d in data.get("declines") or []:
        out.print(f"seat {d['seat']} declined by {d['address']}: {d['reason']}")
    timeline = phase_lines(data.get("phases") or {})
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
        requester = str(client.job(job_id).get("requester", ""))
    if requester.lower() != address.lower():
        raise GpuMarketError(
            f"job {job_id_hex(job_id)} was submitted by {requester}, not by {address}; "
            "drop --account to fetch it anyway"
        )


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value / 1000:.3f} s"


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
