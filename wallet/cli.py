"""``gpumarket wallet``: keys, balances and claims; and what every requester command shares
(the ``job`` group, options, settings, output). The ``job`` commands are in
:mod:`wallet.job_cli`, quotes, costs and the market in :mod:`wallet.market_cli`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from protocol.errors import exits_on_error
from protocol.ids import format_tokens
from wallet import claims, keys
from wallet.settings import WalletSettings

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
    """One JSON line; the coordinator's views are written as the coordinator sent them."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in data]
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


def _ms(value: int | None) -> str:
    """Milliseconds as seconds for a table cell; ``-`` when unknown."""
    return "-" if value is None else f"{value / 1000:.3f} s"
