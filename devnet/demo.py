"""`make demo`: the whole market on a local devnet, as a requester meets it.

Brings up Anvil, IPFS, the contracts, a coordinator and three CPU providers; submits the
seeded-matmul example with redundancy 2; follows it live; downloads and verifies the
result; shows who was paid and how reputations moved; has every party claim what the
market owes it (``wallet claim``: the market never pushes tokens), so the money visibly
leaves the market contract; brings everything down again (in ``finally``, whatever
happened).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from contracts.chain import Web3Chain
from contracts.models import Deployment
from devnet import network
from devnet.cli import _endpoints_table, dashboard_url
from protocol.devnet_state import DevnetState
from protocol.errors import GpuMarketError
from protocol.identity import Identity
from protocol.ids import format_tokens, job_id_hex
from protocol.views import JobEvent
from wallet import claims, jobs
from wallet.coordinator import CoordinatorClient
from wallet.settings import WalletSettings

console = Console()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "matmul" / "job.yaml"


def _snapshot(state: DevnetState, chain: Web3Chain) -> dict[str, dict[str, Any]]:
    """Per account: lifetime market credit; for providers also stake, counters, reputation."""
    assert state.coordinator_url is not None
    with CoordinatorClient(state.coordinator_url) as client:
        reputation = {p.address: p.reputation for p in client.providers()}
    rows: dict[str, dict[str, Any]] = {}
    for account in state.accounts[1:6]:
        row: dict[str, Any] = {
            "role": account.role,
            "credited": chain.account_info(account.address).lifetime,
        }
        if account.role == "provider":
            info = chain.provider_info(account.address)
            # A provider's payments are credited beside its stake (one storage slot).
            row.update(
                credited=row["credited"] + info.earned,
                stake=info.stake,
                completed=info.completed,
                slashed=info.slashed,
                reputation=reputation.get(account.address),
            )
        rows[account.address] = row
    return rows


def _claim_all(state: DevnetState, chain: Web3Chain) -> dict[str, claims.ClaimOutcome]:
    """Every party claims what the market owes it, each in its own transaction."""
    outcomes = {}
    for account in state.accounts[1:6]:
        outcomes[account.address] = claims.claim(chain.for_account(account.private_key))
    return outcomes


def _reputation(old: dict[str, Any], new: dict[str, Any]) -> str:
    """A provider's reputation; a move is shown only for a provider that ran a job."""
    rep_old, rep_new = old.get("reputation"), new.get("reputation")
    if rep_new is None:
        return "-"
    ran = (new["completed"], new["slashed"]) != (old["completed"], old["slashed"])
    if not ran or rep_old is None:
        return f"{rep_new:.3f}"
    return f"{rep_old:.3f}->{rep_new:.3f}"


def _jobs_run(row: dict[str, Any]) -> str:
    done = f"{row['completed']} ok"
    return done + (f", {row['slashed']} slashed" if row["slashed"] else "")


def _money_table(
    before: dict[str, dict[str, Any]],
    after: dict[str, dict[str, Any]],
    claimed: dict[str, claims.ClaimOutcome],
) -> Table:
    table = Table(
        title="payments, claims and reputation (tokens)", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for col in ("account", "role", "credited", "claimed", "stake", "jobs", "reputation"):
        table.add_column(col, no_wrap=True)
    for address, row in after.items():
        old = before[address]
        outcome = claimed[address]
        cells = [
            address[:8],
            row["role"],
            f"+{format_tokens(row['credited'] - old['credited'])}",
            format_tokens(outcome.received) if outcome.tx_hash else "-",
        ]
        if row["role"] == "provider":
            cells += [
                format_tokens(row["stake"]),
                _jobs_run(row),
                _reputation(old, row),
            ]
        table.add_row(*cells)
    return table


def run_demo(state: DevnetState, workdir: Path) -> None:
    assert state.rpc_url and state.chain_id and state.coordinator_url
    requester = next(a for a in state.accounts if a.role == "requester")
    identity = Identity.from_private_key(requester.private_key)
    settings = WalletSettings(
        rpc_url=state.rpc_url,
        chain_id=state.chain_id,
        ipfs_api=state.ipfs_api,
        ipfs_peers=tuple(n.swarm for name, n in state.ipfs_nodes.items() if name != "requester"),
        coordinator_url=state.coordinator_url,
        coordinator_address=next(a.address for a in state.accounts if a.role == "coordinator"),
        token_address=state.contracts["token"],
        registry_address=state.contracts["registry"],
        market_address=state.contracts["market"],
    )
    chain = Web3Chain(
        state.rpc_url,
        Deployment.from_addresses(state.chain_id, state.contracts),
        requester.private_key,
    )
    before = _snapshot(state, chain)

    console.rule(f"submitting {EXAMPLE.relative_to(EXAMPLE.parents[2])} (redundancy 2, exact)")
    started = time.monotonic()
    submitted = jobs.submit(
        settings,
        identity,
        EXAMPLE,
        progress=lambda what, done, total: console.print(f"  {what}: {done}/{total} bytes"),
    )
    console.print(
        f"job {job_id_hex(submitted.job_id)}: escrowed "
        f"{format_tokens(submitted.escrow)} tokens in one transaction "
        f"({submitted.gas_used} gas)"
    )

    def show(event: JobEvent) -> None:
        console.print(
            f"  {time.monotonic() - started:6.2f}s  [bold]{event.state}[/bold]"
            f"  {json.dumps(event.detail, default=str)[:110]}"
        )

    view = jobs.follow(settings, submitted.job_id, show, timeout=300)
    elapsed = time.monotonic() - started
    console.print(f"{view.state} after {elapsed:.1f}s (result {view.result_cid})")

    result_dir = workdir / "demo-result"
    shutil.rmtree(result_dir, ignore_errors=True)  # the previous run's result
    fetched = jobs.fetch_result(settings, submitted.job_id, result_dir)
    cid, path = fetched.cid, fetched.path
    summary = json.loads((path / "summary.json").read_text())
    console.print(
        f"verified result {cid} (from {fetched.source}): every byte checked against the CID"
    )
    console.print(f"  {path}/summary.json: {summary}")
    after = _snapshot(state, chain)
    market = state.contracts["market"]
    held = chain.token_balance(market)
    claimed = _claim_all(state, chain)
    left = chain.token_balance(market)
    console.print(_money_table(before, after, claimed))
    paid_out = sum(o.received for o in claimed.values())
    console.print(
        f"claimed: {sum(1 for o in claimed.values() if o.tx_hash)} transactions paid out "
        f"{format_tokens(paid_out)} tokens; the market contract held {format_tokens(held)}, "
        f"now {format_tokens(left)} (-{format_tokens(held - left)}: stakes and bonds stay)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the gpumarket demo on a local devnet.")
    parser.add_argument("--state", type=Path, default=Path(".devnet/demo-state.json"))
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the devnet running at the end (stop it with `gpumarket devnet down`)",
    )
    parser.add_argument(
        "--shared-ipfs",
        action="store_true",
        help="one IPFS node for everyone instead of one per participant",
    )
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="every participant on a network namespace of its own (needs root)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        report = network.up(
            args.state,
            shared_ipfs=args.shared_ipfs,
            isolated=args.isolated,
            progress=lambda m: console.print(f"[dim]{m}...[/dim]"),
        )
    except GpuMarketError as exc:
        console.print(f"[red]devnet up failed:[/red] {exc}")
        return 1
    code = 0
    try:
        console.print(_endpoints_table(report.state))
        for step, seconds in report.steps:
            console.print(f"  {step:<12} ready in {seconds:5.2f}s")
        run_demo(report.state, args.state.parent)
    except GpuMarketError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        code = 1
    finally:
        if args.keep and code == 0:
            console.print(
                f"devnet left running: dashboard at {dashboard_url(report.state)}; stop it with "
                f"`gpumarket devnet down --state {args.state}`"
            )
        else:
            stopped = network.down(args.state)
            console.print(f"devnet down: stopped {', '.join(stopped)}")
    console.print(f"demo finished in {time.monotonic() - started:.1f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
