"""The transaction sender on chains that do not mine every transaction at once.

Each test starts its own Anvil: ``--no-mining`` (blocks only when the test mines them, so a
transaction can be held, dropped, priced out and replaced) or ``--block-time`` with a small
block gas limit and a second account loading it, so the base fee rises on its own. The fee
rules themselves are unit-tested on fee-history answers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts import sender as sender_module
from contracts.deploy import connect
from contracts.errors import FeeAboveCap, TransactionStuck
from contracts.fees import GWEI, FeePolicy, Fees, bump, fees_from_history
from contracts.sender import SendPolicy, TxSender, journal_path
from devnet.anvil import AnvilNode, start_anvil
from protocol.errors import ChainError

WAIT_S = 30.0


# ------------------------------------------------------------------ fee rules (no chain)
def history(next_base: int, tips: list[int]) -> dict[str, Any]:
    return {"baseFeePerGas": [GWEI] * len(tips) + [next_base], "reward": [[t] for t in tips]}


def test_fees_follow_the_next_base_fee_and_the_median_tip() -> None:
    policy = FeePolicy(max_fee_cap=100 * GWEI, priority_fee_cap=5 * GWEI, priority_fee_floor=1)
    fees = fees_from_history(history(10 * GWEI, [3 * GWEI, 1 * GWEI, 2 * GWEI]), policy)
    assert fees == Fees(max_fee=22 * GWEI, priority_fee=2 * GWEI)
    # an idle chain paid no tips: the floor; a greedy one: cut to the priority cap
    assert fees_from_history(history(GWEI, [0, 0]), policy).priority_fee == 1
    assert fees_from_history(history(GWEI, [9 * GWEI]), policy).priority_fee == 5 * GWEI
    # the base fee is high but still under the cap: offer the cap, not more
    assert fees_from_history(history(60 * GWEI, [GWEI]), policy).max_fee == 100 * GWEI


def test_a_fee_above_the_cap_is_refused_with_the_setting_to_change() -> None:
    policy = FeePolicy(max_fee_cap=50 * GWEI, cap_setting="max_fee_gwei in profile 'base'")
    with pytest.raises(FeeAboveCap) as caught:
        fees_from_history(history(60 * GWEI, [GWEI]), policy)
    message = str(caught.value)
    assert "50 gwei" in message and "asks 61 gwei" in message
    assert "max_fee_gwei in profile 'base'" in message
    assert caught.value.needed_wei == 61 * GWEI


def test_a_replacement_raises_both_fees_by_at_least_an_eighth() -> None:
    policy = FeePolicy(max_fee_cap=100 * GWEI)
    old = Fees(max_fee=8 * GWEI, priority_fee=GWEI)
    calm = Fees(max_fee=2 * GWEI, priority_fee=GWEI // 10)
    new = bump(old, calm, policy)
    assert new is not None
    assert new.max_fee * 8 >= old.max_fee * 9 and new.priority_fee * 8 >= old.priority_fee * 9
    # the chain now asks more than the bump: take what it asks
    busy = Fees(max_fee=40 * GWEI, priority_fee=3 * GWEI)
    assert bump(old, busy, policy) == busy
    # no replacement above the cap
    assert bump(Fees(max_fee=95 * GWEI, priority_fee=GWEI), calm, policy) is None


# ------------------------------------------------------------------ on Anvil
@pytest.fixture
def fresh_nonces() -> Iterator[None]:
    """Each test's Anvil starts over at nonce 0: forget the counters of other chains."""
    sender_module._STATES.clear()
    try:
        yield
    finally:
        sender_module._STATES.clear()


@pytest.fixture
def start(tmp_path: Path, fresh_nonces: None) -> Iterator[Callable[..., AnvilNode]]:
    """``start(*args, block_time=None)`` starts an Anvil with those flags (stopped after)."""
    nodes: list[AnvilNode] = []

    def _start(*args: str, block_time: float | None = None) -> AnvilNode:
        node = start_anvil(tmp_path / f"anvil{len(nodes)}", block_time=block_time, extra_args=args)
        nodes.append(node)
        return node

    try:
        yield _start
    finally:
        for node in nodes:
            node.stop()


class Background:
    """A send running in a thread; :meth:`result` joins it."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.value = fn()
            except BaseException as exc:  # handed to the test by result()
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self) -> Any:
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the send never returned"
        if self.error is not None:
            raise self.error
        return self.value


def key(node: AnvilNode, index: int) -> LocalAccount:
    return Account.from_key(node.accounts[index].private_key)


def transfer(to: str) -> dict[str, Any]:
    return {"to": Web3.to_checksum_address(to), "value": 1, "gas": 21_000}


def pooled(node: AnvilNode, address: str) -> dict[int, dict[str, Any]]:
    """Our transactions in the node's pool, by nonce."""
    content = node.rpc("txpool_content")
    out: dict[int, dict[str, Any]] = {}
    for section in ("pending", "queued"):
        for owner, txs in content.get(section, {}).items():
            if owner.lower() == address.lower():
                out.update({int(n): tx for n, tx in txs.items()})
    return out


def until(check: Callable[[], Any], what: str) -> Any:
    stop = time.monotonic() + WAIT_S
    while time.monotonic() < stop:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def mined_nonces(w3: Web3, address: str, first: int, last: int) -> list[int]:
    """The nonces of ``address``'s transactions in blocks ``first..last``."""
    found = []
    for number in range(first, last + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            full: Any = tx
            if full["from"].lower() == address.lower():
                found.append(int(full["nonce"]))
    return found


def quick(**kw: Any) -> SendPolicy:
    return SendPolicy(replace_after_s=0.5, poll_s=0.05, **kw)


def test_an_over_cap_fee_sends_nothing(start: Callable[..., AnvilNode]) -> None:
    node = start("--no-mining")
    w3 = connect(node.rpc_url)
    me = key(node, 0)
    node.rpc("anvil_setNextBlockBaseFeePerGas", [hex(80 * GWEI)])
    policy = quick(fees=FeePolicy(max_fee_cap=50 * GWEI, cap_setting="max_fee_gwei"))
    tx = TxSender(w3, me, node.chain_id, policy=policy)
    with pytest.raises(FeeAboveCap, match=r"cap is 50 gwei.*Raise max_fee_gwei"):
        tx.send(transfer(node.accounts[1].address))
    assert pooled(node, me.address) == {}
    assert w3.eth.get_transaction_count(me.address, "pending") == 0


def test_a_dropped_transaction_is_sent_again(start: Callable[..., AnvilNode]) -> None:
    node = start("--no-mining")
    w3 = connect(node.rpc_url)
    me = key(node, 0)
    tx = TxSender(w3, me, node.chain_id, policy=quick())
    job = Background(lambda: tx.send(transfer(node.accounts[1].address)))
    first = until(lambda: pooled(node, me.address).get(0), "the transaction in the pool")
    node.rpc("anvil_dropTransaction", [first["hash"]])
    assert pooled(node, me.address) == {}
    until(lambda: pooled(node, me.address).get(0), "the transaction sent again")
    node.rpc("anvil_mine", ["0x1"])
    receipt = job.result()
    assert receipt["status"] == 1
    assert mined_nonces(w3, me.address, 0, w3.eth.block_number) == [0]


def test_a_priced_out_transaction_is_replaced_with_a_bumped_fee(
    start: Callable[..., AnvilNode],
) -> None:
    node = start("--no-mining")
    w3 = connect(node.rpc_url)
    me = key(node, 0)
    tx = TxSender(w3, me, node.chain_id, policy=quick())
    job = Background(lambda: tx.send(transfer(node.accounts[1].address)))
    first = until(lambda: pooled(node, me.address).get(0), "the transaction in the pool")
    # the base fee jumps above what the transaction offers: it cannot be mined
    node.rpc("anvil_setNextBlockBaseFeePerGas", [hex(20 * GWEI)])
    assert int(first["maxFeePerGas"], 16) < 20 * GWEI
    replaced = until(
        lambda: (p := pooled(node, me.address).get(0)) and p["hash"] != first["hash"] and p,
        "a replacement",
    )
    assert int(replaced["nonce"], 16) == 0
    assert int(replaced["maxFeePerGas"], 16) >= 40 * GWEI  # twice the new base fee
    assert (
        int(replaced["maxPriorityFeePerGas"], 16) * 8 >= int(first["maxPriorityFeePerGas"], 16) * 9
    )
    node.rpc("anvil_mine", ["0x1"])
    receipt = job.result()
    assert "0x" + bytes(receipt["transactionHash"]).hex() == replaced["hash"]
    assert w3.eth.get_transaction_count(me.address) == 1
    assert mined_nonces(w3, me.address, 0, w3.eth.block_number) == [0]


def test_the_journal_keeps_a_nonce_across_a_restart(
    start: Callable[..., AnvilNode], tmp_path: Path
) -> None:
    """A transaction stuck when its process stopped, then lost by the node: the restarted
    sender re-sends it from its journal and gives its next transaction the next nonce
    (the node's pending count, 0 again, would have reused nonce 0)."""
    node = start("--no-mining")
    w3 = connect(node.rpc_url)
    me = key(node, 0)
    journal = tmp_path / "journal"
    policy = quick(receipt_timeout_s=0.5)
    before = TxSender(w3, me, node.chain_id, policy=policy, journal_dir=journal)
    with pytest.raises(TransactionStuck, match="nonce 0"):
        before.send(transfer(node.accounts[1].address))
    lost = pooled(node, me.address)[0]["hash"]
    recorded = json.loads(journal_path(journal, node.chain_id, me.address).read_text())
    assert [e["nonce"] for e in recorded["inflight"]] == [0]
    node.rpc("anvil_dropTransaction", [lost])
    sender_module._STATES.clear()  # a new process

    after = TxSender(w3, me, node.chain_id, policy=quick(), journal_dir=journal)
    assert after.pending_nonces() == [0]
    assert pooled(node, me.address)[0]["hash"] == lost  # re-sent from the journal
    job = Background(lambda: after.send(transfer(node.accounts[2].address)))
    until(lambda: 1 in pooled(node, me.address), "the next transaction")
    node.rpc("anvil_mine", ["0x1"])
    receipt = job.result()
    assert w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == 1
    assert w3.eth.get_transaction_receipt(lost)["status"] == 1
    assert mined_nonces(w3, me.address, 0, w3.eth.block_number) == [0, 1]
    assert after.pending_nonces() == []
    recorded = json.loads(journal_path(journal, node.chain_id, me.address).read_text())
    assert recorded["inflight"] == []


def test_a_receipt_removed_by_a_reorg_is_sent_again_before_it_counts(
    start: Callable[..., AnvilNode],
) -> None:
    node = start()  # automine
    w3 = connect(node.rpc_url)
    me = key(node, 0)
    tx = TxSender(w3, me, node.chain_id, policy=quick(confirmations=2))
    job = Background(lambda: tx.send(transfer(node.accounts[1].address)))
    until(lambda: w3.eth.get_transaction_count(me.address) == 1, "the transaction mined")
    mined_in = w3.eth.block_number
    node.rpc("anvil_rollback", [1])  # the block and its transaction are gone
    assert w3.eth.get_transaction_count(me.address) == 0
    until(lambda: w3.eth.get_transaction_count(me.address) == 1, "the transaction mined again")
    assert job.thread.is_alive()  # not confirmed yet
    node.rpc("anvil_mine", ["0x2"])
    receipt = job.result()
    assert receipt["blockNumber"] == mined_in
    assert w3.eth.get_block(receipt["blockNumber"])["hash"] == receipt["blockHash"]
    assert mined_nonces(w3, me.address, 0, w3.eth.block_number) == [0]


def test_many_transactions_under_rising_fees_drops_and_replacements(
    start: Callable[..., AnvilNode],
) -> None:
    """Interval mining, blocks kept full by a second account so the base fee climbs, one
    transaction dropped from the pool: 20 transactions from four threads of one sender all
    land, exactly one per nonce, and nothing is left pending."""
    node = start("--gas-limit", "200000", block_time=0.5)
    w3 = connect(node.rpc_url)
    me, loader = key(node, 0), key(node, 1)
    base_before = int(w3.eth.get_block("latest")["baseFeePerGas"])
    stop = threading.Event()

    def load() -> None:  # two thirds of each block: above the target, with room left
        nonce: int = w3.eth.get_transaction_count(loader.address)
        while not stop.is_set():
            fees = {"maxFeePerGas": 1000 * GWEI, "maxPriorityFeePerGas": 2 * GWEI}
            signed = loader.sign_transaction(
                {**transfer(node.accounts[3].address), **fees, "nonce": nonce, "chainId": 31337}
            )
            try:
                w3.eth.send_raw_transaction(signed.raw_transaction)
                nonce += 1
            except Exception:
                nonce = int(w3.eth.get_transaction_count(loader.address, "pending"))
            time.sleep(0.075)

    loading = threading.Thread(target=load, daemon=True)
    loading.start()
    tx = TxSender(w3, me, node.chain_id, policy=SendPolicy(replace_after_s=2.0, poll_s=0.1))
    dropped: list[str] = []

    def chaos() -> None:  # drop the first transaction of ours seen in the pool
        while not dropped and not stop.is_set():
            for entry in pooled(node, me.address).values():
                node.rpc("anvil_dropTransaction", [entry["hash"]])
                dropped.append(entry["hash"])
                break
            time.sleep(0.05)

    chaotic = threading.Thread(target=chaos, daemon=True)
    chaotic.start()
    first_block = w3.eth.block_number
    try:
        workers = [
            Background(lambda: [tx.send(transfer(node.accounts[2].address)) for _ in range(5)])
            for _ in range(4)
        ]
        receipts = [r for w in workers for r in w.result()]
    finally:
        stop.set()
        loading.join(5)
        chaotic.join(5)
    assert dropped, "nothing was dropped"
    assert len(receipts) == 20 and all(r["status"] == 1 for r in receipts)
    nonces = sorted(w3.eth.get_transaction(r["transactionHash"])["nonce"] for r in receipts)
    assert nonces == list(range(20))
    assert sorted(mined_nonces(w3, me.address, first_block, w3.eth.block_number)) == nonces
    assert w3.eth.get_transaction_count(me.address, "pending") == 20
    assert pooled(node, me.address) == {}
    assert tx.pending_nonces() == []
    peak = max(
        int(w3.eth.get_block(n)["baseFeePerGas"])
        for n in range(first_block, w3.eth.block_number + 1)
    )
    assert peak > base_before  # the load did push the base fee up


def test_nothing_is_sent_that_the_journal_could_not_record(
    start: Callable[..., AnvilNode], tmp_path: Path
) -> None:
    node = start("--no-mining")
    w3 = connect(node.rpc_url)
    me = key(node, 0)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the journal's folder should be")
    tx = TxSender(w3, me, node.chain_id, policy=quick(), journal_dir=blocked)
    with pytest.raises(ChainError, match=r"cannot record the transaction.*nothing was sent"):
        tx.send(transfer(node.accounts[1].address))
    assert pooled(node, me.address) == {}
    assert tx.pending_nonces() == []
