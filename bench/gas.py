"""Gas used by the market's operations and by whole job lifecycles, on a fresh Anvil.

Starts its own Anvil (``--port 0 --hardfork cancun``), deploys the committed artifacts,
funds and stakes, then measures with the real bindings. Figures are for warm accounts
(every party has transacted before, as in a running market); the first-ever job on a
fresh deployment is shown beside them. ``--json`` ends the output with one JSON line.

    python bench/gas.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402

from contracts.chain import Web3Chain  # noqa: E402
from contracts.deploy import deploy_all, fund_accounts  # noqa: E402
from contracts.eip712 import commit_hash, sign_reveal  # noqa: E402
from contracts.models import (  # noqa: E402
    Assignment,
    Deployment,
    JobRequest,
    Settlement,
    SignedEntry,
)
from protocol.ids import JobId, Wei, to_wei  # noqa: E402

ANVIL = ROOT / "node_modules" / ".bin" / "anvil"
MNEMONIC = "test test test test test test test test test test test junk"
PRICE = to_wei("2.00")
CAP = to_wei("2.50")
FEE = to_wei("0.10")
RESULT = b"\x5a" * 32
BATCHES = (1, 10, 50)


def start_anvil(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Anvil on a free port; its log goes to a file (a pipe nobody reads would fill up
    and stall it)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(ANVIL), "--port", "0", "--hardfork", "cancun", "--accounts", "10"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"Listening on 127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if found:
            return proc, f"http://127.0.0.1:{found.group(1)}"
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"anvil did not start; see {log}")


class Bench:
    def __init__(self, rpc_url: str) -> None:
        Account.enable_unaudited_hdwallet_features()
        keys = [
            Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(10)
        ]
        deployer = keys[0]
        addresses = deploy_all(rpc_url, deployer.key.hex())
        fund_accounts(
            rpc_url,
            deployer.key.hex(),
            addresses["token"],
            [k.address for k in keys[1:]],
            to_wei("100000"),
        )
        self.deployment = Deployment.from_addresses(31337, addresses)
        base = Web3Chain(rpc_url, self.deployment, deployer)
        self.requester = base.for_account(keys[1])
        self.coordinator = base.for_account(keys[2])
        self.providers = [base.for_account(k) for k in keys[3:6]]
        self.keys = {c.address: k for c, k in zip(self.providers, keys[3:6], strict=True)}
        self.ops: dict[str, int] = {}
        for p in self.providers:
            self.ops["register"] = p.register(0).gas_used
            self.ops["stake (permit)"] = p.stake(to_wei("5000")).gas_used

    def create(self, redundancy: int) -> tuple[JobId, int]:
        now = self.requester.now()
        request = JobRequest(
            spec_digest=b"\x11" * 32,
            spec_cid="bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            coordinator=self.coordinator.address,
            redundancy=redundancy,
            price_cap=CAP,
            fee=FEE,
            assign_deadline=now + 3600,
            commit_deadline=now + 7200,
            settle_deadline=now + 10800,
        )
        job_id, receipt = self.requester.create_job(request)
        return job_id, receipt.gas_used

    def assign(self, job_id: JobId, n: int) -> tuple[list[Assignment], int]:
        assignment = [Assignment(p.address, Wei(PRICE)) for p in self.providers[:n]]
        return assignment, self.coordinator.assign(job_id, assignment).gas_used

    def settlement(self, job_id: JobId, assignment: list[Assignment]) -> Settlement:
        entries = []
        for a in assignment:
            salt = os.urandom(32)
            sig = sign_reveal(
                self.keys[a.provider], 31337, self.deployment.market, job_id, RESULT, salt
            )
            entries.append(SignedEntry.reveal(RESULT, salt, sig))
        return Settlement(job_id, tuple(assignment), tuple(entries))

    def lifecycle(self, redundancy: int) -> dict[str, int]:
        job_id, create = self.create(redundancy)
        assignment, assign = self.assign(job_id, redundancy)
        settle = self.coordinator.settle(self.settlement(job_id, assignment)).gas_used
        return {"create": create, "assign": assign, "settle": settle}

    def batched(self, redundancy: int, size: int) -> dict[str, int]:
        creates, assigns, batch = [], [], []
        for _ in range(size):
            job_id, create = self.create(redundancy)
            assignment, assign = self.assign(job_id, redundancy)
            creates.append(create)
            assigns.append(assign)
            batch.append(self.settlement(job_id, assignment))
        settle = self.coordinator.settle_batch(batch).gas_used
        return {
            "create": sum(creates) // size,
            "assign": sum(assigns) // size,
            "settle_batch_total": settle,
            "settle_per_job": settle // size,
        }

    def other_ops(self) -> None:
        job_id, _ = self.create(2)
        self.ops["cancel"] = self.requester.cancel(job_id).gas_used
        self.ops["claim (requester)"] = self.requester.claim().gas_used
        self.ops["claim (provider)"] = self.providers[0].claim().gas_used
        self.ops["request unbond"] = self.providers[0].request_unbond(to_wei("1")).gas_used
        job_id, _ = self.create(2)
        assignment, _ = self.assign(job_id, 2)
        w3 = self.requester.w3
        w3.provider.make_request("evm_increaseTime", [11000])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        self.ops["reclaim (r=2, assigned)"] = self.requester.reclaim(job_id, assignment).gas_used
        # a provider's own path when no coordinator settles: commit, reveal, finalize
        job_id, _ = self.create(2)
        self.assign(job_id, 2)
        for p in self.providers[:2]:
            salt = os.urandom(32)
            self.ops["commit on chain"] = p.commit_on_chain(
                job_id, commit_hash(RESULT, salt)
            ).gas_used
            self.ops["reveal on chain"] = p.reveal_on_chain(job_id, RESULT, salt).gas_used
        w3.provider.make_request("evm_increaseTime", [11000])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        self.ops["finalize (r=2, by anyone)"] = self.requester.finalize(job_id).gas_used
        w3.provider.make_request("evm_increaseTime", [90000])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        self.ops["withdraw"] = self.providers[0].withdraw().gas_used

    def split_settle(self) -> int:
        """r=3 with one dissenting provider: two paid, one slashed."""
        job_id, _ = self.create(3)
        assignment, _ = self.assign(job_id, 3)
        s = self.settlement(job_id, assignment)
        a = assignment[1]
        salt = os.urandom(32)
        bad = b"\x66" * 32
        sig = sign_reveal(self.keys[a.provider], 31337, self.deployment.market, job_id, bad, salt)
        entries = (s.entries[0], SignedEntry.reveal(bad, salt, sig), s.entries[2])
        return self.coordinator.settle(Settlement(job_id, s.assignment, entries)).gas_used


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gas-bench-") as tmp:
        return _run(Path(tmp) / "anvil.log")


def _run(log: Path) -> dict[str, Any]:
    proc, url = start_anvil(log)
    try:
        bench = Bench(url)
        first = bench.lifecycle(2)  # the first job ever: cold token, market and account slots
        for r in (1, 2, 3):
            bench.lifecycle(r)  # warm every party
        warm = {r: bench.lifecycle(r) for r in (1, 2, 3)}
        batched = {size: bench.batched(2, size) for size in BATCHES}
        split = bench.split_settle()
        bench.other_ops()
        return {"first": first, "warm": warm, "batched": batched, "split": split, "ops": bench.ops}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def report(data: dict[str, Any]) -> dict[str, Any]:
    first, warm, batched = data["first"], data["warm"], data["batched"]
    print("Gas per job lifecycle (create with permit + assign + settle), warm accounts")
    print(f"{'':24}{'create':>10}{'assign':>10}{'settle':>10}{'total':>10}")
    for r, g in warm.items():
        total = g["create"] + g["assign"] + g["settle"]
        print(f"{'r=' + str(r):24}{g['create']:>10}{g['assign']:>10}{g['settle']:>10}{total:>10}")
    total_first = first["create"] + first["assign"] + first["settle"]
    print(
        f"{'r=2, first job ever':24}{first['create']:>10}{first['assign']:>10}"
        f"{first['settle']:>10}{total_first:>10}"
    )
    print()
    print("Batched settlement, r=2 (gas per job; lifecycle = create + assign + batch share)")
    print(f"{'batch size':24}{'batch tx':>10}{'per job':>10}{'lifecycle':>10}")
    for size, g in batched.items():
        life = g["create"] + g["assign"] + g["settle_per_job"]
        print(f"{size:<24}{g['settle_batch_total']:>10}{g['settle_per_job']:>10}{life:>10}")
    print()
    print("Other operations")
    print(f"{'settle r=3, 2-1 split':32}{data['split']:>10}")
    for name, gas in data["ops"].items():
        print(f"{name:32}{gas:>10}")
    r2 = warm[2]
    return {
        "lifecycle_r1_total_gas": sum(warm[1].values()),
        "lifecycle_r2_total_gas": sum(r2.values()),
        "lifecycle_r3_total_gas": sum(warm[3].values()),
        "lifecycle_r2_first_job_gas": total_first,
        "create_r2_gas": r2["create"],
        "assign_r2_gas": r2["assign"],
        "settle_r2_gas": r2["settle"],
        "settle_batch1_per_job_gas": batched[1]["settle_per_job"],
        "settle_batch10_per_job_gas": batched[10]["settle_per_job"],
        "settle_batch50_per_job_gas": batched[50]["settle_per_job"],
        "settle_r3_split_gas": data["split"],
        **{"op_" + re.sub(r"\W+", "_", k).strip("_") + "_gas": v for k, v in data["ops"].items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = parser.parse_args()
    figures = report(run())
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
