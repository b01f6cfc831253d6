"""``gpumarket contracts``: deploy the market to any chain (the devnet does it by itself).

A thin command over ``contracts.deploy.deploy_all``. Amounts are given in tokens (the
payment token has 6 decimals), delays in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from contracts.deploy import (
    DEFAULT_COORDINATOR_UNBOND_DELAY_S,
    DEFAULT_MIN_COORDINATOR_BOND,
    DEFAULT_MIN_PRICE,
    DEFAULT_MIN_STAKE,
    DEFAULT_STAKE_FACTOR,
    DEFAULT_UNBONDING_DELAY_S,
    deploy_all,
)
from protocol.errors import exits_on_error
from protocol.identity import Identity
from protocol.ids import from_wei, parse_address, to_wei

app = typer.Typer(
    help=(
        "Deploy the market contracts.\n\n"
        "  gpumarket contracts deploy --rpc-url URL --key-file deployer.key --token 0xUSDC"
    ),
    no_args_is_help=True,
)
err = Console(stderr=True)
out = Console()


def _tokens(amount: int) -> str:
    return f"{from_wei(amount).normalize():f}"


@app.command()
@exits_on_error
def deploy(
    rpc_url: Annotated[
        str, typer.Option("--rpc-url", envvar="GPUMARKET_RPC_URL", help="JSON-RPC endpoint.")
    ],
    key_file: Annotated[
        Path, typer.Option("--key-file", help="File holding the deployer's hex private key.")
    ],
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help=(
                "Payment token to use: a 6-decimal ERC-20 with EIP-2612 permit. "
                "Without it a TestUSD (mintable by the deployer) is deployed."
            ),
        ),
    ] = None,
    min_stake: Annotated[
        str, typer.Option(help="Least stake a provider needs, in tokens.")
    ] = _tokens(DEFAULT_MIN_STAKE),
    stake_factor: Annotated[
        int, typer.Option(help="Stake locked per seat, as a multiple of its price.")
    ] = DEFAULT_STAKE_FACTOR,
    unbonding_delay: Annotated[
        int, typer.Option(help="Seconds before a provider's unbonded stake can leave.")
    ] = DEFAULT_UNBONDING_DELAY_S,
    min_price: Annotated[
        str, typer.Option(help="Lowest seat price (and price cap), in tokens.")
    ] = _tokens(DEFAULT_MIN_PRICE),
    min_coordinator_bond: Annotated[
        str, typer.Option(help="Least bond a coordinator needs, in tokens.")
    ] = _tokens(DEFAULT_MIN_COORDINATOR_BOND),
    coordinator_unbond_delay: Annotated[
        int,
        typer.Option(help="Seconds before a coordinator's bond can leave (beyond any job)."),
    ] = DEFAULT_COORDINATOR_UNBOND_DELAY_S,
    json_out: Annotated[bool, typer.Option("--json", help="Print the addresses as JSON.")] = False,
) -> None:
    """Deploy the job market (and TestUSD unless --token is given); print the addresses."""
    try:
        text = key_file.read_text().strip()
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot read {key_file}: {exc.strerror}")
        raise typer.Exit(1) from exc
    deployer = Identity.from_private_key(text)
    addresses = deploy_all(
        rpc_url,
        "0x" + deployer.private_key.hex(),
        unbonding_delay=unbonding_delay,
        min_stake=to_wei(min_stake),
        stake_factor=stake_factor,
        min_price=to_wei(min_price),
        min_coordinator_bond=to_wei(min_coordinator_bond),
        coordinator_unbond_delay=coordinator_unbond_delay,
        token=parse_address(token) if token is not None else None,
    )
    if json_out:
        typer.echo(json.dumps(addresses))
        return
    for name, address in addresses.items():
        out.print(f"{name:>8}: {address}")
