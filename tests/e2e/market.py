"""A running devnet as the end-to-end tests see it: the CLI, the chain, the daemons.

Everything a test does to the market goes through the same doors a person would use:
``python -m gpumarket_cli`` for the requester, the coordinator's HTTP API for its view,
JSON-RPC for the chain, signals for crashes. Every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

from contracts.chain import Web3Chain
from contracts.models import ChainEvent, Deployment
from devnet import network
from devnet.anvil import rpc_call
from devnet.process import is_alive, spawn, stop, wait_ready
from devnet.services import provider_env
from protocol.devnet_state import DevAccount, DevnetState, ProcessRecord, load_state, save_state
from protocol.identity import Identity, save_keystore
from protocol.ids import parse_job_id
from wallet import jobs

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "e2e-password"
FAST_SCRYPT_N = 2**12
"""Test keys guard nothing; a cheap KDF keeps every CLI call fast."""
CLI_TIMEOUT_S = 240.0
TERMINAL = jobs.TERMINAL
READ_ONLY_KEY = "0x" + "11" * 32
REJOIN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Requester:
    name: str
    address: str
    private_key: str


@dataclass(frozen=True)
class Ledger:
    """Every balance a settlement moves, for one set of addresses, at one moment."""

    tokens: dict[str, int]
    owed: dict[str, int]
    earned: dict[str, int]
    stake: dict[str, int]
    market_tokens: int
    burned: int


class Market:
    """Helpers over one devnet state file and a private wallet keystore directory."""

    def __init__(self, state_file: Path, workdir: Path) -> None:
        self.state_file = state_file
        self.workdir = workdir
        self.keystore_dir = workdir / "keystores"
        self.keystore_dir.mkdir(parents=True, exist_ok=True)
        self.password_file = workdir / "password"
        self.password_file.write_text(PASSWORD + "\n")
        self._names = 0

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> DevnetState:
        return load_state(self.state_file)

    @property
    def root(self) -> Path:
        root = self.state.root
        assert root is not None
        return Path(root)

    def account(self, role: str, index: int = 0) -> DevAccount:
        return [a for a in self.state.accounts if a.role == role][index]

    @property
    def coordinator_address(self) -> str:
        return self.account("coordinator").address

    def deployment(self) -> Deployment:
        state = self.state
        assert state.chain_id is not None
        return Deployment.from_addresses(state.chain_id, state.contracts)

    def chain(self, private_key: str = READ_ONLY_KEY) -> Web3Chain:
        state = self.state
        assert state.rpc_url is not None
        return Web3Chain(state.rpc_url, self.deployment(), private_key)

    # ------------------------------------------------------------------ wallet CLI
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WALLET_")}
        env["WALLET_KEYSTORE_DIR"] = str(self.keystore_dir)
        env["PYTHONPATH"] = str(REPO)
        return env

    def cli(
        self, *args: str, timeout: float = CLI_TIMEOUT_S, devnet: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``gpumarket ARGS`` as a requester would; never raises on a non-zero exit."""
        argv = [sys.executable, "-m", "gpumarket_cli", *args]
        if devnet:
            argv += ["--devnet", str(self.state_file)]
        return subprocess.run(
            argv,
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli_json(self, *args: str, timeout: float = CLI_TIMEOUT_S) -> Any:
        done = self.cli(*args, "--json", timeout=timeout)
        assert done.returncode == 0, f"gpumarket {' '.join(args)} failed:\n{done.stderr[-3000:]}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    def new_requester(self, tokens: str = "1000") -> Requester:
        """A fresh funded account with its keystore in the wallet directory."""
        self._names += 1
        name = f"req{self._names}"
        account = Account.create()
        key = "0x" + bytes(account.key).hex()
        network.fund(self.state_file, account.address, tokens=tokens, eth=10)
        save_keystore(
            self.keystore_dir / f"{name}.json",
            Identity.from_private_key(key),
            PASSWORD,
            scrypt_n=FAST_SCRYPT_N,
        )
        return Requester(name, account.address, key)

    def submit(
        self,
        spec: Path,
        requester: Requester,
        *,
        wait: bool = True,
        timeout: float = CLI_TIMEOUT_S,
    ) -> Any:
        args = ["job", "submit", str(spec), "--account", requester.name]
        args += ["--password-file", str(self.password_file)]
        if wait:
            args.append("--wait")
        return self.cli_json(*args, timeout=timeout)

    # ------------------------------------------------------------------ coordinator API
    def api(self, path: str) -> Any:
        url = self.state.coordinator_url
        assert url is not None
        response = httpx.get(url + path, timeout=10.0)
        response.raise_for_status()
        return response.json()

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.api(f"/jobs/{job_id}"))

    def wait_job(
        self,
        job_id: str,
        done: Callable[[dict[str, Any]], bool],
        *,
        timeout: float,
        what: str,
    ) -> dict[str, Any]:
        """Poll the coordinator's view of a job until ``done`` holds."""
        deadline = time.monotonic() + timeout
        view: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                view = self.job(job_id)
            except httpx.HTTPError:
                view = {}
            if view and done(view):
                return view
            time.sleep(0.25)
        raise AssertionError(f"job {job_id} not {what} within {timeout:g}s; last view {view}")

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """Every event of the job's ``/events`` stream, read to its end (call it once the
        job is terminal: the stream ends only after a terminal state)."""
        url = self.state.coordinator_url
        assert url is not None
        events: list[dict[str, Any]] = []
        with httpx.stream("GET", f"{url}/jobs/{job_id}/events", timeout=30.0) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line.removeprefix("data: ")))
        return events

    def standing(self, address: str) -> dict[str, Any]:
        """The coordinator's ``/providers/{address}/standing`` view of a provider."""
        return dict(self.api(f"/providers/{address}/standing"))

    def providers(self) -> list[dict[str, Any]]:
        return list(self.api("/providers")["providers"])

    def wait_providers(self, want: Callable[[set[str]], bool], *, timeout: float) -> set[str]:
        deadline = time.monotonic() + timeout
        listed: set[str] = set()
        while time.monotonic() < deadline:
            try:
                listed = {p["address"] for p in self.providers()}
            except httpx.HTTPError:
                listed = set()
            if want(listed):
                return listed
            time.sleep(0.5)
        raise AssertionError(f"the coordinator's book never reached the wanted state: {listed}")

    def seed(self, job_id: str) -> int:
        """The seed the coordinator assigned (read from its store, read-only)."""
        db = self.root / "coordinator" / "coordinator.sqlite"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            row = conn.execute("select seed from jobs where job_id = ?", (job_id,)).fetchone()
        assert row is not None, f"the coordinator has no job {job_id}"
        return int(row[0])

    # ------------------------------------------------------------------ chain
    def ledger(self, addresses: Iterable[str]) -> Ledger:
        chain = self.chain()
        tokens: dict[str, int] = {}
        owed: dict[str, int] = {}
        earned: dict[str, int] = {}
        stake: dict[str, int] = {}
        for address in addresses:
            tokens[address] = int(chain.token_balance(address))
            owed[address] = int(chain.account_info(address).owed)
            info = chain.provider_info(address)
            earned[address] = int(info.earned)
            stake[address] = int(info.stake)
        market = chain.token_balance(self.deployment().market)
        return Ledger(tokens, owed, earned, stake, market, int(chain.burned()))

    def job_events(self, job_id: str, name: str | None = None) -> list[ChainEvent]:
        chain = self.chain()
        wanted = parse_job_id(job_id)
        events = chain.get_events(0, chain.block_number())
        return [
            e
            for e in events
            if e.contract == "market"
            and _as_bytes(e.args.get("jobId")) == wanted
            and (name is None or e.name == name)
        ]

    def increase_time(self, seconds: int) -> None:
        url = self.state.rpc_url
        assert url is not None
        rpc_call(url, "evm_increaseTime", [seconds])
        rpc_call(url, "evm_mine", [])

    # ------------------------------------------------------------------ processes
    def record(self, name: str) -> ProcessRecord:
        return next(p for p in self.state.processes if p.name == name)

    def provider_name(self, address: str) -> str:
        for record in self.state.processes:
            ready = Path(record.workdir) / "work" / "provider.json"
            if record.name.startswith("provider") and ready.exists():
                if json.loads(ready.read_text())["address"] == address:
                    return record.name
        raise AssertionError(f"no provider process for {address}")

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group of ``name``, like a crash or a power cut."""
        record = self.record(name)
        os.killpg(record.pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while is_alive(record.pid) and time.monotonic() < deadline:
            try:
                os.waitpid(record.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        assert not is_alive(record.pid), f"{name} survived SIGKILL"

    def _replace_record(self, record: ProcessRecord) -> None:
        state = self.state
        state.processes = [p for p in state.processes if p.name != record.name] + [record]
        save_state(self.state_file, state)

    def coordinator_env(self) -> dict[str, str]:
        """The running coordinator's own environment, read from /proc."""
        raw = Path(f"/proc/{self.record('coordinator').pid}/environ").read_bytes()
        pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        return {k.decode(): v.decode() for k, v in pairs}

    def restart_coordinator(self, env: Mapping[str, str]) -> None:
        """Start the coordinator again with ``env`` on the ports it had, same data dir."""
        state = self.state
        ready_file = self.root / "coordinator" / "coordinator.json"
        url = httpx.URL(state.coordinator_url or "")
        assert state.coordinator_multiaddr is not None
        p2p_port = state.coordinator_multiaddr.split("/tcp/")[1].split("/")[0]
        env = dict(env)
        env["COORDINATOR_HTTP_PORT"] = str(url.port)
        env["COORDINATOR_P2P_PORT"] = p2p_port
        ready_file.unlink(missing_ok=True)
        workdir = self.root / "coordinator"
        record = spawn(
            "coordinator",
            [sys.executable, "-m", "gpumarket_cli", "coordinator", "run"],
            log=workdir / "coordinator.log",
            workdir=workdir,
            env=env,
        )
        self._replace_record(record)
        wait_ready(record, ready_file.exists, timeout=120, what="restarted coordinator")
        # Providers find a restarted coordinator only when they dial it again.
        providers = sum(
            1 for p in self.state.processes if p.name.startswith("provider") and is_alive(p.pid)
        )
        self.wait_providers(lambda listed: len(listed) >= providers, timeout=REJOIN_TIMEOUT_S)

    def start_provider(
        self,
        account: DevAccount,
        index: int,
        *,
        module: str = "gpumarket_cli",
        price: str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> ProcessRecord:
        """Start a provider daemon for ``account`` as devnet provider ``index`` would run
        (``extra_env``: more environment, e.g. for a test-only wrapper ``module``)."""
        state = self.state
        workdir, env = provider_env(state, self.root, account, index, "bwrap")
        env["PYTHONPATH"] = str(REPO)
        if price is not None:
            env["PROVIDER_PRICE_PER_GPU_HOUR"] = price
        env.update(extra_env or {})
        argv = [sys.executable, "-m", module]
        if module == "gpumarket_cli":
            argv += ["provider", "run"]
        ready_file = Path(env["PROVIDER_WORK_DIR"]) / "provider.json"
        ready_file.unlink(missing_ok=True)
        record = spawn(
            f"provider-{index}",
            argv,
            log=workdir / "provider.log",
            workdir=workdir,
            env=env,
        )
        self._replace_record(record)
        wait_ready(record, ready_file.exists, timeout=150, what=record.name)
        return record

    def restart_devnet_provider(self, index: int) -> None:
        self.start_provider(self.account("provider", index), index)

    def stop(self, name: str) -> None:
        stop(self.record(name))

    def funded_account(self, tokens: str = "1000") -> DevAccount:
        account = Account.create()
        network.fund(self.state_file, account.address, tokens=tokens, eth=10)
        return DevAccount(
            address=account.address, private_key="0x" + bytes(account.key).hex(), role="extra"
        )


def _as_bytes(value: Any) -> bytes | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return bytes.fromhex(value.removeprefix("0x"))
    return None
