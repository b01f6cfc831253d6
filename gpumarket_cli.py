"""The ``gpumarket`` command: one entry point, one command group per component.

Every way in (the ``gpumarket`` console script, ``python -m gpumarket_cli``, code that
imports :data:`app`) runs :func:`prepare_process` once this module's imports are done, and
again before each command runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from contracts.network import NETWORK_ENV, NETWORKS_FILE_ENV
from coordinator.cli import app as coordinator_app
from devnet.cli import app as devnet_app
from devnet.contracts_cli import app as contracts_app
from protocol.encoding import restore_recursion_limit
from provider_node.cli import app as provider_app
from wallet.cli import wallet_app
from wallet.job_cli import job_app
from wallet.market_cli import market_app


def prepare_process(
    network: Annotated[
        str | None,
        typer.Option(
            "--network",
            help=(
                "Network profile for every command: 'devnet' (from .devnet/state.json) or a "
                f"[NAME] table of the profiles file. Also ${NETWORK_ENV}."
            ),
        ),
    ] = None,
    networks: Annotated[
        Path | None,
        typer.Option(
            "--networks",
            help=f"The network profiles file (TOML). Also ${NETWORKS_FILE_ENV}; "
            "default ~/.gpumarket/networks.toml.",
        ),
    ] = None,
) -> None:
    """Process-wide settings that must hold before any untrusted input is read.

    py_ecc (imported through web3 above) raises Python's recursion limit to 100,000, at
    which the C JSON parser overflows the stack on deeply nested input and the process dies
    without a trace; restored, such input raises ``RecursionError`` instead. ``--network``
    and ``--networks`` select the network profile for every command group and daemon (as
    their environment variables, which child processes inherit).
    """
    restore_recursion_limit()
    if network is not None:
        os.environ[NETWORK_ENV] = network
    if networks is not None:
        os.environ[NETWORKS_FILE_ENV] = str(networks)


prepare_process()

app = typer.Typer(
    name="gpumarket",
    help=(
        "gpumarket: a decentralized GPU compute marketplace.\n\n"
        "Providers sell GPU time, requesters submit jobs, a coordinator matches them and "
        "settles payment through an escrow contract. Start with `gpumarket devnet up` for a "
        "local market on this machine."
    ),
    no_args_is_help=True,
    add_completion=False,
)
app.callback()(prepare_process)
app.add_typer(devnet_app, name="devnet")
app.add_typer(provider_app, name="provider")
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(wallet_app, name="wallet")
app.add_typer(job_app, name="job")
app.add_typer(market_app, name="market")
app.add_typer(contracts_app, name="contracts")


if __name__ == "__main__":
    app()
