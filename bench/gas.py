"""Gas used by the market's operations and by whole job lifecycles, on a fresh Anvil.

Starts its own Anvil (``--port 0 --hardfork cancun``), deploys the committed artifacts,
funds, bonds the coordinator and stakes five providers, then measures with the real
bindings (``contracts.chain.Web3Chain``): providers consent with signed Accepts, reveals
carry runtimes that settlement bills, windows are the wallet's own (``job_windows``), and
the fallback paths move Anvil's clock with ``evm_increaseTime`` between phases. Figures are
for warm accounts (every party has transacted before, as in a running market); the
first-ever job on a fresh deployment is shown beside them. ``--json`` ends the output with
one JSON line.

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
from eth_account.signers.local import LocalAccount  # noqa: E402

from contracts.chain import Web3Chain  # noqa: E402
from contracts.deploy import (  # noqa: E402
    DEFAULT_MIN_COORDINATOR_BOND,
    deploy_all,
    fund_accounts,
)
from contracts.models import (  # noqa: E402
    AcceptedSeat,
    Deployment,
    JobRequest,
    Seat,
    Settlement,
    SignedEntry,
)
from protocol.eip712 import (  # noqa: E402
    Signature,
    commit_hash,
    sign_accept,
    sign_receipt,
    sign_reveal,
)
from protocol.ids import JobId, Wei, to_wei  # noqa: E402
from wallet.windows import job_windows  # noqa: E402

ANVIL = ROOT / "node_modules" / ".bin" / "anvil"
MNEMONIC = "test test test test test test test test test test test junk"
PRICE = to_wei("2.00")
RATE_PER_HOUR = to_wei("6.00")  # a minute of runtime pays 0.10: billing, not the price, decides
CAP = to_wei("2.50")
FEE = to_wei("0.10")
TIMEOUT_S = 600
RESULT = b"\x5a" * 32
RUNTIMES_MS = (60_000, 61_000, 59_500, 60_500, 62_000)
BATCHES = (1, 10, 50)
PROVIDERS = 5


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
    """One deployment, a requester, a bonded coordinator and five staked providers in
    distinct operator groups, all driven through ``Web3Chain``."""

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
        self.domain = self.deployment.domain
        base = Web3Chain(rpc_url, self.deployment, deployer)
        self.w3 = base.w3
        self.requester = base.for_account(keys[1])
        self.coordinator = base.for_account(keys[2])
        self.coordinator_key = keys[2]
        provider_keys = keys[3 : 3 + PROVIDERS]
        self.providers = [base.for_account(k) for k in provider_keys]
        self.keys: dict[str, LocalAccount] = {
            c.address: k for c, k in zip(self.providers, provider_keys, strict=True)
        }
        self.ops: dict[str, int] = {}
        bond = self.coordinator.bond_coordinator(DEFAULT_MIN_COORDINATOR_BOND)
        self.ops["bond coordinator (permit)"] = bond.gas_used
        for group, p in enumerate(self.providers, start=1):
            self.ops["register"] = p.register(group).gas_used
            self.ops["stake (permit)"] = p.stake(to_wei("5000")).gas_used

    # ------------------------------------------------------------------ steps
    def advance_past(self, timestamp: int) -> None:
        """Move Anvil's clock just past ``timestamp`` and mine a block there."""
        gap = timestamp + 1 - self.requester.now()
        if gap > 0:
            self.w3.provider.make_request("evm_increaseTime", [gap])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def create(self, redundancy: int) -> tuple[JobId, int]:
        windows = job_windows(self.requester.now(), TIMEOUT_S, redundancy)
        request = JobRequest(
            spec_digest=b"\x11" * 32,
            spec_cid="bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            coordinator=self.coordinator.address,
            redundancy=redundancy,
            price_cap=Wei(CAP),
            fee=Wei(FEE),
            timeout_ms=windows.timeout_ms,
            assign_deadline=windows.assign_deadline,
            commit_window=windows.commit_window,
            reveal_window=windows.reveal_window,
            spare_deadline=windows.spare_deadline,
            settle_deadline=windows.settle_deadline,
        )
        job_id, receipt = self.requester.create_job(request)
        return job_id, receipt.gas_used

    def offers(self, job_id: JobId, first_seat: int, n: int) -> list[AcceptedSeat]:
        """Each provider's signed Accept for the next seats, as the coordinator collects them."""
        terms_hash = self.coordinator.job_terms(job_id).terms_hash()
        expiry = self.coordinator.now() + 600
        offers = []
        for i, p in enumerate(self.providers[first_seat : first_seat + n]):
            sig = sign_accept(
                self.keys[p.address],
                self.domain,
                job_id,
                p.address,
                first_seat + i,
                PRICE,
                RATE_PER_HOUR,
                terms_hash,
                expiry,
            )
            offers.append(
                AcceptedSeat(
                    p.address, Wei(PRICE), Wei(RATE_PER_HOUR), expiry, Signature.from_bytes(sig)
                )
            )
        return offers

    def assign(self, job_id: JobId, n: int) -> tuple[list[Seat], int]:
        gas = self.coordinator.assign(job_id, self.offers(job_id, 0, n)).gas_used
        return self.coordinator.get_seats(job_id), gas

    def reveal(self, job_id: JobId, seat: Seat, index: int, result: bytes = RESULT) -> SignedEntry:
        salt = os.urandom(32)
        runtime = RUNTIMES_MS[index]
        sig = sign_reveal(
            self.keys[seat.provider], self.domain, job_id, seat.provider, result, runtime, salt
        )
        return SignedEntry.reveal(result, runtime, salt, Signature.from_bytes(sig))

    def settlement(self, job_id: JobId, seats: list[Seat]) -> Settlement:
        entries = tuple(self.reveal(job_id, seat, i) for i, seat in enumerate(seats))
        return Settlement(job_id, tuple(seats), entries)

    # ------------------------------------------------------------- lifecycles
    def lifecycle(self, redundancy: int) -> dict[str, int]:
        """create (permit) + assign (consent) + settle (signed reveals, billed runtimes)."""
        job_id, create = self.create(redundancy)
        seats, assign = self.assign(job_id, redundancy)
        settle = self.coordinator.settle(self.settlement(job_id, seats)).gas_used
        return {"create": create, "assign": assign, "settle": settle}

    def batched(self, redundancy: int, size: int) -> dict[str, int]:
        creates, assigns, batch = [], [], []
        for _ in range(size):
            job_id, create = self.create(redundancy)
            seats, assign = self.assign(job_id, redundancy)
            creates.append(create)
            assigns.append(assign)
            batch.append(self.settlement(job_id, seats))
        settle = self.coordinator.settle_batch(batch).gas_used
        return {
            "create": sum(creates) // size,
            "assign": sum(assigns) // size,
            "settle_batch_total": settle,
            "settle_per_job": settle // size,
        }

    def split_settle(self) -> int:
        """r=3 with one dissenting provider: two paid, one slashed (its lock burned)."""
        job_id, _ = self.create(3)
        seats, _ = self.assign(job_id, 3)
        entries = list(self.settlement(job_id, seats).entries)
        entries[1] = self.reveal(job_id, seats[1], 1, result=b"\x66" * 32)
        return self.coordinator.settle(Settlement(job_id, tuple(seats), tuple(entries))).gas_used

    def no_coordinator_path(self) -> dict[str, int]:
        """r=2 after the coordinator assigned and vanished: each provider commits and
        reveals on chain itself, then anyone finalizes after the settle deadline."""
        job_id, create = self.create(2)
        seats, assign = self.assign(job_id, 2)
        salts = [os.urandom(32) for _ in seats]
        commits = []
        for i, (seat, salt) in enumerate(zip(seats, salts, strict=True)):
            p = self.providers[i]
            digest = commit_hash(job_id, seat.provider, RESULT, RUNTIMES_MS[i], salt)
            commits.append(p.commit_on_chain(job_id, i, digest).gas_used)
        terms = self.requester.job_terms(job_id)
        self.advance_past(terms.reveal_open(seats))
        reveals = [
            self.providers[i].reveal_on_chain(job_id, i, RESULT, RUNTIMES_MS[i], salt).gas_used
            for i, salt in enumerate(salts)
        ]
        self.advance_past(terms.settle_deadline)
        finalize = self.requester.finalize(job_id).gas_used
        self.ops["commit on chain"] = commits[-1]
        self.ops["reveal on chain"] = reveals[-1]
        self.ops["finalize (r=2, by anyone)"] = finalize
        return {
            "create": create,
            "assign": assign,
            "commits": sum(commits),
            "reveals": sum(reveals),
            "finalize": finalize,
        }

    def receipt_path(self) -> dict[str, int]:
        """r=2: both providers committed off chain and hold the coordinator's receipts;
        the coordinator never settles, so each reveals on chain with its receipt and
        anyone finalizes."""
        job_id, create = self.create(2)
        seats, assign = self.assign(job_id, 2)
        reveals: list[tuple[bytes, int, bytes]] = []
        for i, seat in enumerate(seats):
            salt = os.urandom(32)
            digest = commit_hash(job_id, seat.provider, RESULT, RUNTIMES_MS[i], salt)
            receipt = sign_receipt(
                self.coordinator_key, self.domain, job_id, seat.provider, i, digest
            )
            reveals.append((salt, RUNTIMES_MS[i], receipt))
        terms = self.requester.job_terms(job_id)
        self.advance_past(terms.reveal_open(seats))
        gas = [
            self.providers[i]
            .reveal_on_chain(job_id, i, RESULT, runtime, salt, receipt_signature=receipt)
            .gas_used
            for i, (salt, runtime, receipt) in enumerate(reveals)
        ]
        self.advance_past(terms.settle_deadline)
        finalize = self.requester.finalize(job_id).gas_used
        self.ops["reveal on chain (with receipt)"] = gas[-1]
        return {"create": create, "assign": assign, "reveals": sum(gas), "finalize": finalize}

    def other_ops(self) -> None:
        job_id, _ = self.create(2)
        self.ops["cancel"] = self.requester.cancel(job_id).gas_used
        job_id, _ = self.create(2)
        self.assign(job_id, 2)
        self.ops["abort (r=2, assigned)"] = self.coordinator.abort(job_id).gas_used
        self.ops["claim (requester)"] = self.requester.claim().gas_used
        self.ops["claim (provider)"] = self.providers[0].claim().gas_used
        self.ops["request unbond"] = self.providers[0].request_unbond(to_wei("1")).gas_used
        job_id, _ = self.create(2)
        self.assign(job_id, 2)
        self.advance_past(self.requester.job_terms(job_id).settle_deadline)
        self.ops["reclaim (r=2, assigned)"] = self.requester.reclaim(job_id).gas_used
        self.advance_past(self.requester.now() + 2 * 86400)
        self.ops["withdraw"] = self.providers[0].withdraw().gas_used


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
        fallback = bench.no_coordinator_path()
        receipts = bench.receipt_path()
        bench.other_ops()
        return {
            "first": first,
            "warm": warm,
            "batched": batched,
            "split": split,
            "fallback": fallback,
            "receipts": receipts,
            "ops": bench.ops,
        }
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
    fallback, receipts = data["fallback"], data["receipts"]
    print("Without a coordinator after assign, r=2 (providers post to the chain themselves)")
    print(
        f"{'':24}{'create':>10}{'assign':>10}{'commits':>10}{'reveals':>10}{'finalize':>10}"
        f"{'total':>10}"
    )
    print(
        f"{'commit + reveal':24}{fallback['create']:>10}{fallback['assign']:>10}"
        f"{fallback['commits']:>10}{fallback['reveals']:>10}{fallback['finalize']:>10}"
        f"{sum(fallback.values()):>10}"
    )
    print(
        f"{'reveal with receipt':24}{receipts['create']:>10}{receipts['assign']:>10}"
        f"{'-':>10}{receipts['reveals']:>10}{receipts['finalize']:>10}{sum(receipts.values()):>10}"
    )
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
        "no_coordinator_path_total_gas": sum(fallback.values()),
        "receipt_reveal_path_total_gas": sum(receipts.values()),
        "claim_gas": data["ops"]["claim (provider)"],
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
