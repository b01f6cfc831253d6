"""``gpumarket devnet``: run the whole market locally on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from devnet import network
from protocol.devnet_state import DEFAULT_STATE_FILE, DevnetState
from protocol.errors import exits_on_error

app = typer.Typer(
    help=(
        "Run a local market on this machine: Anvil (an EVM chain), an IPFS node, the "
        "contracts, a coordinator and CPU providers, all on 127.0.0.1.\n\n"
        "`up` starts everything and writes the endpoints to a state file, `status` checks "
        "them, `down` stops exactly what `up` started (even if `up` was interrupted)."
    ),
    no_args_is_help=True,
)
err = Console(stderr=True)
out = Console()

StateOpt = Annotated[
    Path,
    typer.Option(
        "--state",
        help="State file recording endpoints and started processes.",
        envvar="GPUMARKET_DEVNET_STATE",
    ),
]


def dashboard_url(state: DevnetState) -> str:
    """The coordinator's dashboard page (read-only; open it in a browser)."""
    return f"{state.coordinator_url}/dashboard" if state.coordinator_url else "-"


def _endpoints_table(state: DevnetState) -> Table:
    table = Table(title="devnet endpoints")
    table.add_column("what")
    table.add_column("where")
    table.add_row("RPC URL", state.rpc_url or "-")
    table.add_row("chain id", str(state.chain_id or "-"))
    table.add_row("IPFS API", state.ipfs_api or "-")
    for name, node in state.ipfs_nodes.items():
        if name != "requester":
            table.add_row(f"IPFS API ({name})", node.api)
    if state.coordinator_url:
        table.add_row("coordinator", state.coordinator_url)
        table.add_row("dashboard", dashboard_url(state))
    for name, address in state.contracts.items():
        table.add_row(f"contract {name}", address)
    for account in state.accounts[:4]:
        table.add_row(f"account ({account.role})", account.address)
    if len(state.accounts) > 4:
        table.add_row("accounts", f"... {len(state.accounts)} funded in all (see state file)")
    return table


@app.command()
@exits_on_error
def up(
    state: StateOpt = DEFAULT_STATE_FILE,
    anvil_port: Annotated[int, typer.Option(help="Anvil port (0: any free port).")] = 0,
    ipfs_port: Annotated[int, typer.Option(help="IPFS API port (0: any free port).")] = 0,
    providers: Annotated[int, typer.Option(help="CPU provider daemons to start (0-3).")] = 3,
    coordinator: Annotated[
        bool, typer.Option("--coordinator/--no-coordinator", help="Start the coordinator.")
    ] = True,
    runtime: Annotated[str, typer.Option(help="Providers' sandbox: bwrap or process.")] = "bwrap",
    shared_ipfs: Annotated[
        bool,
        typer.Option(help="One IPFS node for everyone instead of one per participant."),
    ] = False,
    isolated: Annotated[
        bool,
        typer.Option(
            help="Every participant on a host of its own: network namespaces on a private "
            "bridge, reached by address only (needs root; `devnet down` removes them)."
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """Start the devnet in the background and write its endpoints to the state file."""
    report = network.up(
        state,
        anvil_port=anvil_port,
        ipfs_port=ipfs_port,
        coordinator=coordinator,
        providers=providers,
        runtime=runtime,
        shared_ipfs=shared_ipfs,
        isolated=isolated,
        progress=lambda msg: err.print(f"[dim]{msg}...[/dim]"),
    )
    if json_out:
        typer.echo(report.state.model_dump_json())
        return
    out.print(_endpoints_table(report.state))
    out.print(f"devnet up in {report.seconds:.1f}s; state in {state}")


@app.command()
@exits_on_error
def status(
    state: StateOpt = DEFAULT_STATE_FILE,
    json_out: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check that every endpoint and process of the devnet answers (exit 1 if not)."""
    checks = network.status(state)
    if json_out:
        typer.echo(json.dumps([c.__dict__ for c in checks]))
    else:
        table = Table(title=f"devnet status ({state})")
        for col in ("component", "target", "ok", "detail"):
            table.add_column(col)
        for c in checks:
            table.add_row(
                c.name, c.target, "[green]yes[/green]" if c.ok else "[red]no[/red]", c.detail
            )
        out.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@app.command()
@exits_on_error
def down(state: StateOpt = DEFAULT_STATE_FILE) -> None:
    """Stop every process the devnet started and remove its temporary files."""
    stopped = network.down(state, progress=lambda msg: err.print(f"[dim]{msg}[/dim]"))
    out.print(f"devnet down: stopped {', '.join(stopped) or 'nothing'}")


@app.command()
@exits_on_error
def fund(
    address: Annotated[str, typer.Argument(help="Account to fund.")],
    tokens: Annotated[str, typer.Option(help="Test tokens to mint.")] = "1000",
    eth: Annotated[int, typer.Option(help="ETH for gas (set, not added).")] = 100,
    state: StateOpt = DEFAULT_STATE_FILE,
) -> None:
    """Give ADDRESS test tokens and ETH for gas on the devnet."""
    network.fund(state, address, tokens=tokens, eth=eth)
    out.print(f"funded {address}: {tokens} tokens, {eth} ETH")
