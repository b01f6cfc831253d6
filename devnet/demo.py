"""`make demo`: the whole market on a local devnet, as a requester meets it.

Brings up Anvil, IPFS, the contracts, a coordinator and three CPU providers; submits the
seeded-matmul example with redundancy 2; follows it live; downloads and verifies the
result; shows who was paid and how reputations moved; brings everything down again
(in ``finally``, whatever happened).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from contracts.chain import Web3Chain
from contracts.models import Deployment
from devnet import network
from devnet.cli import _endpoints_table
from devnet.state import DevnetState
from protocol.errors import GpuMarketError
from protocol.identity import Identity
from protocol.ids import job_id_hex
from wallet import jobs
from wallet.coordinator import CoordinatorClient
from wallet.settings import WalletSettings

console = Console()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "matmul" / "job.yaml"


def _snapshot(state: DevnetState, chain: Web3Chain) -> dict[str, dict[str, Any]]:
    """Per account: lifetime market credit; for providers also stake, counters, reputation."""
    assert state.coordinator_url is not None
    with CoordinatorClient(state.coordinator_url) as client:
        reputation = {p["address"]: p.get("reputation") for p in client.providers()}
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


def _money_table(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="payments and reputation")
    for col in ("account", "role", "credited", "stake", "jobs ok/slashed", "reputation"):
        table.add_column(col)
    for address, row in after.items():
        old = before[address]
        credited = jobs.tokens(row["credited"] - old["credited"])
        if row["role"] == "provider":
            rep_old, rep_new = old.get("reputation"), row.get("reputation")
            rep = (
                f"{rep_old:.3f} -> {rep_new:.3f}"
                if rep_old is not None and rep_new is not None
                else "-"
            )
            table.add_row(
                address[:12] + "...",
                row["role"],
                f"+{credited}",
                jobs.tokens(row["stake"]),
                f"{row['completed']}/{row['slashed']}",
                rep,
            )
        else:
            table.add_row(address[:12] + "...", row["role"], f"+{credited}", "", "", "")
    return table


def run_demo(state: DevnetState, workdir: Path) -> None:
    assert state.rpc_url and state.chain_id and state.coordinator_url
    requester = next(a for a in state.accounts if a.role == "requester")
    identity = Identity.from_private_key(requester.private_key)
    settings = WalletSettings(
        rpc_url=state.rpc_url,
        chain_id=state.chain_id,
        ipfs_api=state.ipfs_api,
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
        f"{jobs.tokens(submitted.escrow)} tokens in one transaction "
        f"({submitted.gas_used} gas)"
    )

    def show(event: dict[str, Any]) -> None:
        console.print(
            f"  {time.monotonic() - started:6.2f}s  [bold]{event.get('state')}[/bold]"
            f"  {json.dumps(event.get('detail'), default=str)[:110]}"
        )

    view = jobs.follow(settings, submitted.job_id, show, timeout=300)
    elapsed = time.monotonic() - started
    console.print(f"{view['state']} after {elapsed:.1f}s: {view.get('detail', '')}")

    result_dir = workdir / "demo-result"
    cid, path = jobs.fetch_result(settings, submitted.job_id, result_dir)
    summary = json.loads((path / "summary.json").read_text())
    console.print(f"verified result {cid}: every byte checked against the CID")
    console.print(f"  {path}/summary.json: {summary}")
    console.print(_money_table(before, _snapshot(state, chain)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the gpumarket demo on a local devnet.")
    parser.add_argument("--state", type=Path, default=Path(".devnet/demo-state.json"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        report = network.up(args.state, progress=lambda m: console.print(f"[dim]{m}...[/dim]"))
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
        stopped = network.down(args.state)
        console.print(f"devnet down: stopped {', '.join(stopped)}")
    console.print(f"demo finished in {time.monotonic() - started:.1f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
