"""The ``gpumarket`` command: one entry point, one command group per component."""

from __future__ import annotations

import typer

from coordinator.cli import app as coordinator_app
from devnet.cli import app as devnet_app
from provider_node.cli import app as provider_app
from wallet.cli import job_app, wallet_app

app = typer.Typer(
    name="gpumarket",
    help=(
        "gpumarket: a decentralized GPU compute marketplace.\n\n"
        "Providers sell GPU time, requesters submit jobs, a coordinator matches them and\n"
        "settles payment through an escrow contract. Start with `gpumarket devnet up` for a\n"
        "local market on this machine."
    ),
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(devnet_app, name="devnet")
app.add_typer(provider_app, name="provider")
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(wallet_app, name="wallet")
app.add_typer(job_app, name="job")


if __name__ == "__main__":
    app()
