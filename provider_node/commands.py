"""The daemon's and the stake's commands for the ``gpumarket provider`` group.

``register_commands(app)`` adds ``run``, ``register``, ``stake``, ``unbond``, ``withdraw``,
``status`` (registration, stake, the consent policy and the provider's standing at the
coordinators it names) and ``earnings`` (paid, pending, slashed and claimed, from the
market's events). Each reads
:class:`ProviderSettings` (environment plus flags), calls one library function and prints
the answer.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from protocol.errors import exits_on_error
from protocol.ids import from_wei, to_wei
from protocol.views import StandingView
from provider_node import staking
from provider_node.settings import ProviderSettings, load_settings
from provider_node.standing import StandingUnavailable, fetch_standing, standing_lines

if TYPE_CHECKING:
    from contracts.chain import Web3Chain
    from provider_node.earnings import EarningsChain

console = Console()
err_console = Console(stderr=True)

WorkDir = Annotated[Path | None, typer.Option("--work-dir", help="PROVIDER_WORK_DIR.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]
CoordinatorUrls = Annotated[
    list[str] | None,
    typer.Option(
        "--coordinator-url",
        envvar="PROVIDER_COORDINATOR_URL",
        help="A coordinator's HTTP API to read this provider's standing from; repeatable "
        "(PROVIDER_COORDINATOR_URL: space-separated).",
    ),
]


def _chain(settings: ProviderSettings) -> Web3Chain:
    from protocol.identity import load_keystore
    from provider_node.daemon import connect_chain

    identity = load_keystore(settings.keystore, settings.keystore_password())
    return connect_chain(settings, identity)


def _receipt(receipt: Any, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps({"tx_hash": receipt.tx_hash, "block": receipt.block_number}))
    else:
        console.print(f"transaction {receipt.tx_hash} in block {receipt.block_number}")


def register_commands(app: typer.Typer) -> None:
    """Add the daemon and staking commands to the provider group ``app``."""

    @app.command()
    @exits_on_error
    def run(
        unsafe_process_runtime: Annotated[
            bool,
            typer.Option(
                "--unsafe-process-runtime",
                help="Allow PROVIDER_RUNTIME=process (no isolation; development only).",
            ),
        ] = False,
        runtime: Annotated[
            str | None, typer.Option(help="bwrap, docker, podman or process.")
        ] = None,
        work_dir: WorkDir = None,
        p2p_port: Annotated[int | None, typer.Option(help="PROVIDER_P2P_PORT.")] = None,
        listen: Annotated[
            str | None,
            typer.Option(help="PROVIDER_LISTEN: libp2p listen multiaddr (/ip4/0.0.0.0/tcp/4001)."),
        ] = None,
        announce: Annotated[
            list[str] | None,
            typer.Option(help="PROVIDER_ANNOUNCE: a multiaddr coordinators dial (repeatable)."),
        ] = None,
        metrics_port: Annotated[int | None, typer.Option(help="PROVIDER_METRICS_PORT.")] = None,
        cpu_only: Annotated[
            bool | None, typer.Option("--cpu-only/--gpus-only", help="PROVIDER_CPU_ONLY.")
        ] = None,
        verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    ) -> None:
        """Run the provider daemon until SIGTERM (settings from PROVIDER_* variables); it
        refuses to start when a must-have check of `provider doctor` fails."""
        import trio

        from provider_node.daemon import run_provider
        from provider_node.doctor import preflight

        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        settings = load_settings(
            unsafe_process_runtime=unsafe_process_runtime or None,
            runtime=runtime,
            work_dir=work_dir,
            p2p_port=p2p_port,
            listen=listen,
            announce=tuple(announce) if announce else None,
            metrics_port=metrics_port,
            cpu_only=cpu_only,
        )
        preflight(settings)
        trio.run(run_provider, settings)

    @app.command()
    @exits_on_error
    def register(group: Annotated[int, typer.Option(help="Operator group.")] = 0,
                 as_json: AsJson = False) -> None:  # fmt: skip
        """Register this account as a provider."""
        _receipt(staking.register(_chain(load_settings()), group), as_json)

    @app.command()
    @exits_on_error
    def stake(amount: Annotated[Decimal, typer.Argument(help="Token units to bond.")],
              as_json: AsJson = False) -> None:  # fmt: skip
        """Bond more stake (one transaction with a permit)."""
        _receipt(staking.stake(_chain(load_settings()), to_wei(amount)), as_json)

    @app.command()
    @exits_on_error
    def unbond(amount: Annotated[Decimal, typer.Argument(help="Token units to unbond.")],
               as_json: AsJson = False) -> None:  # fmt: skip
        """Start unbonding free stake; withdraw it after the unbonding delay."""
        _receipt(staking.unbond(_chain(load_settings()), to_wei(amount)), as_json)

    @app.command()
    @exits_on_error
    def withdraw(as_json: AsJson = False) -> None:
        """Take back stake whose unbonding delay has passed."""
        _receipt(staking.withdraw(_chain(load_settings())), as_json)

    @app.command()
    @exits_on_error
    def status(as_json: AsJson = False, coordinator_url: CoordinatorUrls = None) -> None:
        """Show this provider's registration, stake, consent policy and its standing
        (reputation) at each coordinator given by --coordinator-url."""
        from provider_node.policy import consent_policy

        settings = load_settings()
        policy = consent_policy(settings)
        chain = _chain(settings)
        info = staking.status(chain)
        gas_warning = staking.fallback_gas_warning(chain, settings.max_concurrent_jobs)
        standings, problems = _standings(coordinator_url or [], info.address)
        view: dict[str, Any] = {
            "address": info.address,
            "registered": info.registered,
            "group": info.group,
            "stake": str(from_wei(info.stake)),
            "locked": str(from_wei(info.locked)),
            "free": str(from_wei(info.free)),
            "unbonding": str(from_wei(info.unbonding)),
            "unbond_ready_at": info.unbond_ready_at,
            "completed": info.completed,
            "slashed": info.slashed,
            "policy": policy.view(info.stake),
            "gas_warning": gas_warning,
        }
        if coordinator_url:
            view["standing"] = {url: s.model_dump(mode="json") for url, s in standings.items()}
        if as_json:
            console.print_json(json.dumps(view))
        else:
            for key, value in view.items():
                if key not in ("policy", "standing", "gas_warning"):
                    console.print(f"{key:>16}: {value}")
            console.print("consent policy (offers outside it are declined):")
            for line in policy_lines(view["policy"]):
                console.print(f"  {line}")
            for url, standing in standings.items():
                console.print(f"standing at {url}:")
                for line in standing_lines(standing):
                    console.print(f"  {line}")
        if gas_warning is not None:
            err_console.print(f"[yellow]warning:[/yellow] {escape(gas_warning)}", soft_wrap=True)
        for problem in problems:
            err_console.print(f"[red]error:[/red] {escape(str(problem))}", soft_wrap=True)
        if problems:
            raise typer.Exit(code=1)

    @app.command()
    @exits_on_error
    def earnings(
        account: Annotated[
            str | None,
            typer.Option(
                "--account", "-a", help="The provider address; default: this provider's keystore."
            ),
        ] = None,
        since: Annotated[
            str | None,
            typer.Option(
                help="Only jobs closed, and claims made, in the last 7d, 24h, 30m or since an "
                "ISO date (UTC); pending jobs are always shown."
            ),
        ] = None,
        from_block: Annotated[
            int,
            typer.Option(
                envvar="PROVIDER_START_BLOCK",
                min=0,
                help="Read events from this block: the market's deployment block (0 on a devnet).",
            ),
        ] = 0,
        as_json: AsJson = False,
    ) -> None:
        """Paid, pending, slashed, claimable and claimed tokens, per job and in total, read
        from the market's events; time sold in GPU-seconds and CPU-seconds with the rate
        earned per GPU-hour and per CPU-hour (each job's GPU count comes from its spec,
        read through PROVIDER_IPFS_API)."""
        from provider_node.earnings import (
            earnings_lines,
            earnings_table,
            ipfs_gpus_of,
            read_earnings,
        )

        settings = load_settings()
        chain, address = _reader(settings, account)
        report = read_earnings(
            chain,
            address,
            market=settings.market,
            from_block=from_block,
            since=since,
            gpus_of=ipfs_gpus_of(settings.ipfs_api),
        )
        if as_json:
            print(json.dumps(report.view()))
            return
        console.print(earnings_table(report))
        for line in earnings_lines(report):
            console.print(line, highlight=False, soft_wrap=True)


def _reader(settings: ProviderSettings, account: str | None) -> tuple[EarningsChain, str]:
    """A chain client and the provider address to read: the keystore's own, or ``account``
    (read with a throwaway key: the client signs nothing)."""
    from eth_account import Account

    from contracts.chain import Web3Chain
    from contracts.deploy import connect
    from contracts.models import Deployment

    if account is None:
        chain = _chain(settings)
        return chain, chain.address
    w3 = connect(settings.rpc_url)
    chain_id = int(w3.eth.chain_id)
    deployment = Deployment(chain_id, settings.token, settings.registry, settings.market)
    return Web3Chain(settings.rpc_url, deployment, Account.create(), w3=w3), account


def _standings(
    urls: list[str], address: str
) -> tuple[dict[str, StandingView], list[StandingUnavailable]]:
    """The provider's standing at each coordinator, and the ones that could not be read."""
    found: dict[str, StandingView] = {}
    problems: list[StandingUnavailable] = []
    for url in urls:
        try:
            found[url] = fetch_standing(url, address)
        except StandingUnavailable as exc:
            problems.append(exc)
    return found, problems


def policy_lines(policy: dict[str, Any]) -> list[str]:
    """The consent policy as ``provider status`` prints it."""
    coordinators = ", ".join(policy["coordinators"]) or "none (every offer is declined)"
    cap = policy["max_locked_stake"]
    if policy["max_locked_stake_is_all_stake"]:
        cap += " (all stake)"
    return [
        f"coordinators: {coordinators}",
        f"minimum rate: {policy['min_rate_per_gpu_hour']} tokens per GPU-hour, "
        f"{policy['min_rate_per_cpu_hour']} tokens per CPU-hour",
        f"longest lock: {policy['max_lock_s']} s",
        f"most locked:  {cap}",
    ]
