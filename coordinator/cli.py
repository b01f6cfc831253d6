"""``gpumarket coordinator``: run the coordinator service.

Settings come from ``COORDINATOR_*`` environment variables; each flag overrides its variable.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import trio
import typer

from coordinator.settings import CoordinatorSettings, load_settings
from protocol.errors import exits_on_error

app = typer.Typer(
    name="coordinator",
    help="Run a coordinator: match jobs to providers, verify results, settle on chain.",
    no_args_is_help=True,
    add_completion=False,
)
log = logging.getLogger("coordinator")


@app.callback()
def coordinator() -> None:
    """Run a coordinator: match jobs to providers, verify results, settle on chain."""


async def serve(settings: CoordinatorSettings) -> None:
    """Run until SIGTERM or SIGINT, with the ready file present while ready."""
    from coordinator.service import Coordinator

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with Coordinator(settings) as coord:
            ready = coord.write_ready_file()
            log.info("ready: %s", coord.ready_info())
            try:
                async for signum in signals:
                    log.info("received %s, shutting down", signal.Signals(signum).name)
                    break
            finally:
                ready.unlink(missing_ok=True)


@app.command()
@exits_on_error
def run(
    network: Annotated[
        str | None, typer.Option(help="COORDINATOR_NETWORK: a network profile's name")
    ] = None,
    rpc_url: Annotated[str | None, typer.Option(help="COORDINATOR_RPC_URL")] = None,
    market_address: Annotated[str | None, typer.Option(help="COORDINATOR_MARKET_ADDRESS")] = None,
    registry_address: Annotated[
        str | None, typer.Option(help="COORDINATOR_REGISTRY_ADDRESS")
    ] = None,
    token_address: Annotated[str | None, typer.Option(help="COORDINATOR_TOKEN_ADDRESS")] = None,
    keystore: Annotated[Path | None, typer.Option(help="COORDINATOR_KEYSTORE")] = None,
    password_file: Annotated[Path | None, typer.Option(help="COORDINATOR_PASSWORD_FILE")] = None,
    ipfs_api: Annotated[str | None, typer.Option(help="COORDINATOR_IPFS_API")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="COORDINATOR_DATA_DIR")] = None,
    db_url: Annotated[
        str | None, typer.Option(help="COORDINATOR_DB_URL (default: SQLite in the data dir)")
    ] = None,
    http_host: Annotated[str | None, typer.Option(help="COORDINATOR_HTTP_HOST")] = None,
    http_port: Annotated[
        int | None, typer.Option(help="COORDINATOR_HTTP_PORT (0: any free port)")
    ] = None,
    p2p_port: Annotated[
        int | None, typer.Option(help="COORDINATOR_P2P_PORT (0: any free port)")
    ] = None,
    reorg_margin: Annotated[
        int | None, typer.Option(help="COORDINATOR_REORG_MARGIN (0 on devnet)")
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(help="COORDINATOR_LISTEN: libp2p listen multiaddr (/ip4/0.0.0.0/tcp/4001)"),
    ] = None,
    announce: Annotated[
        list[str] | None,
        typer.Option(help="COORDINATOR_ANNOUNCE: a multiaddr providers dial (repeatable)"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Run the coordinator until SIGTERM/SIGINT; writes <data_dir>/coordinator.json when ready."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = load_settings(
        network=network,
        rpc_url=rpc_url,
        market_address=market_address,
        registry_address=registry_address,
        token_address=token_address,
        keystore=keystore,
        password_file=password_file,
        ipfs_api=ipfs_api,
        data_dir=data_dir,
        db_url=db_url,
        http_host=http_host,
        http_port=http_port,
        p2p_port=p2p_port,
        reorg_margin=reorg_margin,
        listen=listen,
        announce=tuple(announce) if announce else None,
    )
    trio.run(serve, settings)
