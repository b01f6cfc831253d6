"""Bring the local market up and down, recording everything in the state file.

``up`` saves the state file after every process it starts, so ``down`` can stop exactly
those processes even when ``up`` itself was killed halfway.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from contracts.chain import Web3Chain
from contracts.deploy import DEFAULT_MIN_COORDINATOR_BOND, deploy_all, fund_accounts
from contracts.models import Deployment
from devnet import netns
from devnet.anvil import check_anvil, rpc_call, start_anvil
from devnet.ipfs import check_ipfs, restart_ipfs, start_ipfs, start_nodes, stop_ipfs
from devnet.process import is_alive, stop
from devnet.services import spawn_provider, start_coordinator, wait_provider
from protocol.devnet_state import (
    DevnetState,
    IpfsEndpoint,
    ProcessRecord,
    load_state,
    save_state,
)
from protocol.errors import DevnetError
from protocol.ids import parse_address, to_wei

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class EndpointCheck:
    name: str
    target: str
    ok: bool
    detail: str


@dataclass
class UpReport:
    state: DevnetState
    seconds: float
    steps: list[tuple[str, float]] = field(default_factory=list)


def up(
    state_file: Path,
    *,
    progress: Progress = _quiet,
    anvil_port: int = 0,
    ipfs_port: int = 0,
    coordinator: bool = True,
    providers: int = 3,
    runtime: str = "bwrap",
    shared_ipfs: bool = False,
    isolated: bool = False,
    provider_settings: Mapping[str, str] | None = None,
) -> UpReport:
    """Start Anvil, IPFS, the contracts, the coordinator and ``providers`` provider daemons.

    Every participant (the requester's wallet, the coordinator, each provider) gets an IPFS
    node of its own, all connected as swarm peers; ``shared_ipfs`` starts one node that all
    of them use instead (``ipfs_port`` is the requester's node's API port either way).

    ``isolated`` puts Anvil, the coordinator, each provider and every IPFS node on hosts
    of their own (network namespaces on a private bridge, :mod:`devnet.netns`; root needed):
    they reach each other by address only, never over a shared loopback. The machine sits
    on the bridge too, as the requester's side (the wallet runs here; its IPFS node on a
    host of its own).

    ``provider_settings`` are extra ``PROVIDER_*`` variables every provider starts with.

    The state file is rewritten after each process starts; on any failure everything
    started so far is stopped before the error propagates."""
    if state_file.exists():
        with contextlib.suppress(DevnetError):
            existing = load_state(state_file)
            if any(is_alive(p.pid) for p in existing.processes):
                raise DevnetError(
                    f"a devnet recorded in {state_file} is still running; "
                    "run `gpumarket devnet down` first or pass another --state"
                )
    state_file.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="gpumarket-devnet-"))
    state = DevnetState(root=str(root))
    save_state(state_file, state)
    started = time.monotonic()
    steps: list[tuple[str, float]] = []
    net: netns.Network | None = None
    try:
        if isolated:
            if shared_ipfs:
                raise DevnetError(
                    "--isolated gives every participant its own IPFS node: drop --shared-ipfs"
                )
            progress("creating the private network")
            net = netns.Network().create()
            state.machine_link = net.machine_link
            save_state(state_file, state)

        def host(name: str) -> netns.Host | None:
            if net is None:
                return None
            made = net.add(name)
            state.namespaces = net.namespaces()
            save_state(state_file, state)
            return made

        t0 = time.monotonic()
        progress("starting anvil")
        anvil = start_anvil(root / "anvil", port=anvil_port, host=host("chain"))
        state.processes.append(anvil.process)
        state.rpc_url, state.chain_id, state.accounts = (
            anvil.rpc_url,
            anvil.chain_id,
            anvil.accounts,
        )
        save_state(state_file, state)
        steps.append(("anvil", time.monotonic() - t0))

        t0 = time.monotonic()
        if shared_ipfs:
            progress("starting ipfs")
            ipfs = start_ipfs(root / "ipfs", api_port=ipfs_port)
            state.processes.append(ipfs.process)
            state.ipfs_api = ipfs.api_url
        else:
            names = ["requester", *(["coordinator"] if coordinator else [])]
            names += [f"provider-{i}" for i in range(providers)]
            progress(f"starting {len(names)} ipfs nodes")

            def recorded(process: ProcessRecord) -> None:
                state.processes.append(process)  # saved at once: `down` can stop it
                save_state(state_file, state)

            hosts = {name: h for name in names if (h := host(name)) is not None}
            nodes = start_nodes(root, names, api_port=ipfs_port, on_spawn=recorded, hosts=hosts)
            for name, node in nodes.items():
                state.ipfs_nodes[name] = IpfsEndpoint(
                    api=node.api_url,
                    gateway=node.gateway_url,
                    swarm=node.swarm_addr,
                    workdir=str(node.repo.parent),
                )
            state.ipfs_api = nodes["requester"].api_url
        save_state(state_file, state)
        steps.append(("ipfs", time.monotonic() - t0))

        t0 = time.monotonic()
        progress("deploying contracts")
        deploy_market(state)
        save_state(state_file, state)
        steps.append(("contracts", time.monotonic() - t0))

        if coordinator:
            t0 = time.monotonic()
            progress("starting the coordinator")
            record, ready = start_coordinator(state, root, host=host("coordinator"))
            state.processes.append(record)
            state.coordinator_url = ready["http_url"]
            state.coordinator_multiaddr = ready["multiaddr"]
            save_state(state_file, state)
            steps.append(("coordinator", time.monotonic() - t0))

        if providers:
            t0 = time.monotonic()
            progress(f"starting {providers} providers")
            pending = []
            for index in range(providers):
                record, ready_file = spawn_provider(
                    state,
                    root,
                    index,
                    runtime=runtime,
                    host=host(f"provider-{index}"),
                    settings=provider_settings,
                )
                state.processes.append(record)
                save_state(state_file, state)
                pending.append((record, ready_file))
            for record, ready_file in pending:
                wait_provider(record, ready_file)
            steps.append(("providers", time.monotonic() - t0))
    except BaseException:
        down(state_file)
        raise
    return UpReport(state=state, seconds=time.monotonic() - started, steps=steps)


ROLES = [
    "deployer",
    "coordinator",
    "provider",
    "provider",
    "provider",
    "requester",
    "requester",
    "requester",
    "requester",
    "requester",
]
DEVNET_FUNDS = to_wei("100000")
DEVNET_UNBONDING_DELAY_S = 60
DEVNET_MIN_COORDINATOR_BOND = DEFAULT_MIN_COORDINATOR_BOND


def deploy_market(state: DevnetState) -> None:
    """Deploy TestUSD and the market from account 0 (the contracts' default parameters,
    a short unbonding delay), mint test tokens to the other accounts and bond the
    coordinator account."""
    assert state.rpc_url is not None
    state.accounts = [
        a.model_copy(update={"role": role}) for a, role in zip(state.accounts, ROLES, strict=False)
    ]
    deployer = state.accounts[0].private_key
    state.contracts = deploy_all(state.rpc_url, deployer, unbonding_delay=DEVNET_UNBONDING_DELAY_S)
    fund_accounts(
        state.rpc_url,
        deployer,
        state.contracts["token"],
        [a.address for a in state.accounts[1:]],
        DEVNET_FUNDS,
    )
    bond_coordinator(state)


def bond_coordinator(state: DevnetState) -> None:
    """The market takes jobs only for bonded coordinators: bond the coordinator account
    with the minimum (one transaction, permit signed here)."""
    assert state.rpc_url is not None and state.chain_id is not None
    account = next(a for a in state.accounts if a.role == "coordinator")
    deployment = Deployment.from_addresses(state.chain_id, state.contracts)
    Web3Chain(state.rpc_url, deployment, account.private_key).bond_coordinator(
        DEVNET_MIN_COORDINATOR_BOND
    )


def fund(state_file: Path, address: str, *, tokens: str, eth: int) -> None:
    """Mint test tokens to ``address`` and set its ETH balance, on a running devnet."""
    state = load_state(state_file)
    if not state.rpc_url or "token" not in state.contracts:
        raise DevnetError(f"the devnet in {state_file} has no deployed token")
    target = parse_address(address)
    fund_accounts(
        state.rpc_url,
        state.accounts[0].private_key,
        state.contracts["token"],
        [target],
        to_wei(tokens),
    )
    rpc_call(state.rpc_url, "anvil_setBalance", [target, hex(eth * 10**18)])


def restart_ipfs_node(state_file: Path, name: str) -> ProcessRecord:
    """Restart participant ``name``'s IPFS node (``requester``, ``coordinator``,
    ``provider-<i>``) on its repo, identity and ports, and record the new process so
    ``down`` stops it. Its swarm connections are gone afterwards: peers redial it."""
    state = load_state(state_file)
    if state.namespaces:
        raise DevnetError("restarting a node of an isolated devnet is not supported")
    node = state.ipfs_nodes.get(name)
    if node is None:
        known = ", ".join(state.ipfs_nodes) or "none (a shared node)"
        raise DevnetError(f"no IPFS node {name!r} in {state_file}; nodes: {known}")
    index, record = next(
        (i, p)
        for i, p in enumerate(state.processes)
        if p.workdir == node.workdir and p.name.startswith("ipfs")
    )

    def recorded(process: ProcessRecord) -> None:
        state.processes[index] = process  # saved at once: `down` can stop it
        save_state(state_file, state)

    return restart_ipfs(record, node.api, Path(node.workdir) / "repo", on_spawn=recorded)


def down(state_file: Path, *, progress: Progress = _quiet) -> list[str]:
    """Stop every process recorded in ``state_file`` (newest first); remove its files."""
    state = load_state(state_file)
    stopped: list[str] = []
    errors: list[str] = []
    for record in reversed(state.processes):
        progress(f"stopping {record.name} (pid {record.pid})")
        try:
            if record.name.startswith("ipfs"):
                repo = Path(record.workdir) / "repo"
                api = next(
                    (n.api for n in state.ipfs_nodes.values() if n.workdir == record.workdir),
                    state.ipfs_api,
                )
                stop_ipfs(api, record, repo)
            else:
                stop(record)
            stopped.append(record.name)
        except DevnetError as exc:
            errors.append(str(exc))
    if state.namespaces or state.machine_link:
        progress("removing the private network")
        netns.remove(state.namespaces, machine_link=state.machine_link)
    if errors:
        raise DevnetError("; ".join(errors))
    if state.root:
        shutil.rmtree(state.root, ignore_errors=True)
    state_file.unlink(missing_ok=True)
    return stopped


def status(state_file: Path) -> list[EndpointCheck]:
    """Check that every endpoint and process in the state file answers."""
    state = load_state(state_file)
    checks: list[EndpointCheck] = []
    if state.rpc_url:
        try:
            checks.append(
                EndpointCheck(
                    "anvil", state.rpc_url, True, f"chain id {check_anvil(state.rpc_url)}"
                )
            )
        except DevnetError as exc:
            checks.append(EndpointCheck("anvil", state.rpc_url, False, str(exc)))
    apis = {f"ipfs {name}": node.api for name, node in state.ipfs_nodes.items()}
    if not apis and state.ipfs_api:
        apis["ipfs"] = state.ipfs_api
    for label, api in apis.items():
        try:
            checks.append(EndpointCheck(label, api, True, f"version {check_ipfs(api)}"))
        except DevnetError as exc:
            checks.append(EndpointCheck(label, api, False, str(exc)))
    for record in state.processes:
        alive = is_alive(record.pid)
        checks.append(
            EndpointCheck(
                f"process {record.name}",
                f"pid {record.pid}",
                alive,
                "running" if alive else f"not running (log {record.log})",
            )
        )
    return checks
