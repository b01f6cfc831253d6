"""The transaction sender (``contracts.sender.TxSender``) on a real Anvil, two ways.

* **automine** (the devnet): one account sends N transfers in a row; reported: JSON-RPC
  calls per transaction (counted at web3's HTTP provider) and transactions per second.
* **rough chain**: Anvil mines every 0.3 s while a pricing thread raises the next block's
  base fee by a quarter every 0.4 s (to 40 gwei) and a chaos thread drops the first three
  of the account's transactions it sees in the pool; four threads of one account send N
  transfers. Reported: wall time, how many transactions were sent again (lost) and
  replaced (priced out), the peak base fee, nonces mined more than once (must be 0) and
  left pending (must be 0).

    python -m bench.sender [--json] [--count 100]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import HTTPProvider, Web3

from contracts import sender as sender_module
from contracts.deploy import connect
from contracts.fees import GWEI
from contracts.sender import SendPolicy, TxSender
from devnet.anvil import AnvilNode, start_anvil

CALLS: Counter[str] = Counter()
_make_request = HTTPProvider.make_request


def _counting(self: HTTPProvider, method: Any, params: Any) -> Any:
    CALLS[str(method)] += 1
    return _make_request(self, method, params)


def transfer(to: str) -> dict[str, Any]:
    return {"to": Web3.to_checksum_address(to), "value": 1, "gas": 21_000}


def automine(root: Path, count: int) -> dict[str, Any]:
    sender_module._STATES.clear()
    node = start_anvil(root / "automine")
    # web3 binds the provider's request function when the client is made: count from there
    HTTPProvider.make_request = _counting  # type: ignore[method-assign]
    try:
        w3 = connect(node.rpc_url)
        tx = TxSender(w3, Account.from_key(node.accounts[0].private_key), node.chain_id)
        tx.send(transfer(node.accounts[1].address))  # the nonce counter is primed
        CALLS.clear()
        start = time.perf_counter()
        for _ in range(count):
            tx.send(transfer(node.accounts[1].address))
        seconds = time.perf_counter() - start
        return {
            "transactions": count,
            "rpc_calls_per_tx": round(sum(CALLS.values()) / count, 2),
            "calls": {k: round(v / count, 2) for k, v in sorted(CALLS.items())},
            "tx_per_s": round(count / seconds, 1),
        }
    finally:
        HTTPProvider.make_request = _make_request  # type: ignore[method-assign]
        node.stop()


def rough(root: Path, count: int) -> dict[str, Any]:
    sender_module._STATES.clear()
    node = start_anvil(root / "rough", block_time=0.3)
    try:
        return _rough(node, count)
    finally:
        node.stop()


def _rough(node: AnvilNode, count: int) -> dict[str, Any]:
    w3 = connect(node.rpc_url)
    me = Account.from_key(node.accounts[0].private_key)
    policy = SendPolicy(replace_after_s=1.5, poll_s=0.1, receipt_timeout_s=120)
    tx = TxSender(w3, me, node.chain_id, policy=policy)
    first = w3.eth.block_number + 1
    stop = threading.Event()
    dropped: list[str] = []

    def pricing() -> None:
        fee = GWEI
        while not stop.is_set():
            fee = min(fee * 5 // 4, 40 * GWEI)
            node.rpc("anvil_setNextBlockBaseFeePerGas", [hex(fee)])
            time.sleep(0.4)

    def chaos() -> None:
        while len(dropped) < 3 and not stop.is_set():
            pending = node.rpc("txpool_content").get("pending", {})
            ours = [
                tx
                for a, txs in pending.items()
                if a.lower() == me.address.lower()
                for tx in txs.values()
            ]
            for entry in ours:
                if entry["hash"] not in dropped:
                    node.rpc("anvil_dropTransaction", [entry["hash"]])
                    dropped.append(entry["hash"])
                    break
            time.sleep(0.05)

    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(n):
                tx.send(transfer(node.accounts[1].address))
        except BaseException as exc:  # reported below
            errors.append(exc)

    helpers = [threading.Thread(target=f, daemon=True) for f in (pricing, chaos)]
    for helper in helpers:
        helper.start()
    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(count // 4,)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - start
    stop.set()
    for helper in helpers:
        helper.join(5)
    if errors:
        raise errors[0]
    last = w3.eth.block_number
    mined: Counter[int] = Counter()
    peak = 0
    for number in range(first, last + 1):
        block: Any = w3.eth.get_block(number, full_transactions=True)
        peak = max(peak, int(block["baseFeePerGas"]))
        for t in block["transactions"]:
            if t["from"] == me.address:
                mined[int(t["nonce"])] += 1
    sent = count // 4 * 4
    return {
        "transactions": sent,
        "seconds": round(seconds, 1),
        **tx.counts(),
        "dropped_by_chaos": len(dropped),
        "peak_base_fee_gwei": round(peak / GWEI, 2),
        "nonces_mined_twice": sum(1 for n in mined.values() if n > 1),
        "nonces_mined": len(mined),
        "left_pending": int(w3.eth.get_transaction_count(me.address, "pending"))
        - int(w3.eth.get_transaction_count(me.address)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    parser.add_argument("--count", type=int, default=100, help="transactions per scenario")
    args = parser.parse_args()
    logging.getLogger("contracts.sender").setLevel(logging.ERROR)  # replacements are counted
    with tempfile.TemporaryDirectory(prefix="bench-sender-") as tmp:
        root = Path(tmp)
        auto = automine(root, args.count)
        bumpy = rough(root, args.count)
    print(f"{'automine (devnet)':<34}{'value':>12}")
    print(f"{'  transactions':<34}{auto['transactions']:>12}")
    print(f"{'  JSON-RPC calls per transaction':<34}{auto['rpc_calls_per_tx']:>12}")
    print(f"{'  transactions per second':<34}{auto['tx_per_s']:>12}")
    print(f"{'rough chain (0.3 s blocks)':<34}")
    for key in (
        "transactions",
        "seconds",
        "resent",
        "replaced",
        "dropped_by_chaos",
        "peak_base_fee_gwei",
        "nonces_mined",
        "nonces_mined_twice",
        "left_pending",
    ):
        print(f"{'  ' + key.replace('_', ' '):<34}{bumpy[key]:>12}")
    if args.json:
        print(json.dumps({"automine": auto, "rough": bumpy}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
