"""``gpumarket devnet``: run the whole market locally."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run a local market: Anvil, IPFS, contracts, coordinator, providers.", no_args_is_help=True)
