"""Sign transactions locally, price them under a cap, and see each one mined.

Every :class:`TxSender` for the same (chain, address) in this process shares one lock, one
local nonce counter and one table of transactions in flight, so threads sending from one
account never reuse a nonce. For each transaction:

* fees come from the chain's fee history under the policy's cap (``contracts.fees``); a fee
  above the cap raises :class:`FeeAboveCap` and nothing is sent;
* while it waits for the receipt, a transaction the node no longer knows (dropped from its
  pool, or removed by a reorganisation) is sent again, and one still unmined
  ``replace_after_s`` after it was sent is replaced by the same transaction (same nonce)
  with fees raised by at least 12.5%; an earlier nonce of ours that blocks it is moved
  along the same way;
* with ``confirmations`` > 0 the receipt counts only once that many blocks follow its block
  (a receipt a reorganisation removes in the meantime is waited for again, the transaction
  re-sent if need be);
* with a journal directory, every transaction in flight (its fields, fees, hashes and
  signed bytes) is written there atomically before it is sent, and removed once mined, so
  a restarted process knows which nonces it already used and sends again what may have
  been lost (the node's ``pending`` count alone cannot tell a lost transaction from a
  mined one on a node that dropped it, nor re-create a transaction that must be re-sent
  or replaced).

The counter is resynced from the node (``pending`` count, never below a nonce in flight)
whenever a send fails.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.types import TxParams, TxReceipt

from contracts.errors import (
    FeeAboveCap,
    InsufficientGasMoney,
    TransactionStuck,
    translate_error,
)
from contracts.fees import FeePolicy, Fees, bump, suggest_fees
from protocol.errors import ChainError
from protocol.files import write_atomic

log = logging.getLogger(__name__)

DEFAULT_RECEIPT_TIMEOUT_S = 60.0
JOURNAL_VERSION = 1
_KEPT_FIELDS = ("to", "data", "value", "gas", "chainId", "nonce")

__all__ = ["DEFAULT_RECEIPT_TIMEOUT_S", "FeeAboveCap", "SendPolicy", "TxSender"]


@dataclass(frozen=True)
class SendPolicy:
    """How a sender prices, replaces and confirms its transactions."""

    fees: FeePolicy = field(default_factory=FeePolicy)
    confirmations: int = 0
    """Blocks that must follow a receipt's block before it counts (0: the receipt itself)."""
    replace_after_s: float = 30.0
    """A transaction still unmined this long after it was (re)sent is replaced."""
    receipt_timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S
    """How long :meth:`TxSender.send` waits in all before raising TransactionStuck."""
    poll_s: float = 0.1


@dataclass
class _InFlight:
    """One nonce of ours the chain has not mined yet: the latest signed version of it and
    the hashes of every version sent."""

    nonce: int
    fields: dict[str, Any]
    fees: Fees
    raw: str = ""
    hashes: list[str] = field(default_factory=list)
    sent_at: float = 0.0
    """Wall time of the latest (re)send."""

    def to_json(self) -> dict[str, Any]:
        return {
            "nonce": self.nonce,
            "fields": self.fields,
            "fees": self.fees.to_json(),
            "raw": self.raw,
            "hashes": self.hashes,
            "sent_at": self.sent_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _InFlight:
        return cls(
            nonce=int(data["nonce"]),
            fields=dict(data["fields"]),
            fees=Fees.from_json(data["fees"]),
            raw=str(data["raw"]),
            hashes=[str(h) for h in data["hashes"]],
            sent_at=float(data["sent_at"]),
        )


@dataclass
class _NonceState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_nonce: int | None = None
    inflight: dict[int, _InFlight] = field(default_factory=dict)
    journal: Path | None = None
    loaded: bool = False
    resent: int = 0
    replaced: int = 0


_STATES: dict[tuple[int, str], _NonceState] = {}
_STATES_LOCK = threading.Lock()


def _state_for(chain_id: int, address: str) -> _NonceState:
    with _STATES_LOCK:
        return _STATES.setdefault((chain_id, address), _NonceState())


def journal_path(directory: Path, chain_id: int, address: str) -> Path:
    """Where the transactions in flight of ``address`` on ``chain_id`` are recorded."""
    return directory / f"{chain_id}-{address.lower()}.json"


class TxSender:
    """Sends transactions from one local account; :meth:`send` waits for the receipt."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        chain_id: int,
        receipt_timeout_s: float | None = None,
        *,
        policy: SendPolicy | None = None,
        journal_dir: Path | None = None,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.chain_id = chain_id
        self.policy = policy or SendPolicy()
        self.receipt_timeout_s = (
            self.policy.receipt_timeout_s if receipt_timeout_s is None else receipt_timeout_s
        )
        self._state = _state_for(chain_id, account.address)
        if journal_dir is not None and self._state.journal is None:
            self._state.journal = journal_path(journal_dir, chain_id, account.address)

    # ---------------------------------------------------------------- sending
    def send(self, call: Any, gas: int | None = None) -> TxReceipt:
        """Estimate (which surfaces custom errors by name), price, sign, send, and wait for
        the receipt (see the module docstring for what waiting does).

        ``call`` is a bound contract function (``contract.functions.f(...)``) or a dict of
        raw transaction fields (``data`` and no ``to`` deploys a contract).
        """
        state = self._state
        entry: _InFlight | None = None
        with state.lock:
            try:
                self._load()
                fields = self._build(call, gas)
                fees = suggest_fees(self.w3, self.policy.fees)
                entry = _InFlight(nonce=int(fields["nonce"]), fields=fields, fees=fees)
                self._sign(entry)
                state.inflight[entry.nonce] = entry
                self._save()  # recorded before it leaves: a crash once it is out keeps it
                self.w3.eth.send_raw_transaction(HexStr(entry.raw))
            except FeeAboveCap:
                raise  # nothing was sent: the counter still holds
            except Exception as exc:
                state.next_nonce = None  # resync from the node next time
                if entry is not None and state.inflight.pop(entry.nonce, None) is not None:
                    self._save_or_log()
                if isinstance(exc, OSError) and state.journal is not None:
                    raise ChainError(
                        f"cannot record the transaction in {state.journal} ({exc}); nothing "
                        "was sent"
                    ) from exc
                if "insufficient funds" in str(exc).lower() and entry is not None:
                    raise self._short_of_gas(entry) from exc
                raise translate_error(exc) from exc
            assert state.next_nonce is not None
            state.next_nonce += 1
        return self._await(entry)

    def gas_shortfall(self, gas: int) -> InsufficientGasMoney | None:
        """What is missing to pay ``gas`` units at the fee a transaction would offer now
        (None when the balance covers it): for a warning before an action."""
        fees = suggest_fees(self.w3, self.policy.fees)
        balance = int(self.w3.eth.get_balance(self.account.address))
        needed = gas * fees.max_fee
        if balance >= needed:
            return None
        return InsufficientGasMoney(
            account=self.account.address, needed_wei=needed, balance_wei=balance
        )

    def _short_of_gas(self, entry: _InFlight) -> ChainError:
        try:
            balance = int(self.w3.eth.get_balance(self.account.address))
        except Exception as exc:
            return translate_error(exc)
        needed = int(entry.fields.get("gas", 0)) * entry.fees.max_fee
        return InsufficientGasMoney(
            account=self.account.address,
            needed_wei=needed + int(entry.fields.get("value", 0)),
            balance_wei=balance,
        )

    def counts(self) -> dict[str, int]:
        """Transactions of this account sent again as they were (the node had lost them)
        and replaced with higher fees, in this process."""
        return {"resent": self._state.resent, "replaced": self._state.replaced}

    def pending_nonces(self) -> list[int]:
        """Nonces sent and not yet seen mined (from this process or the journal)."""
        with self._state.lock:
            self._load()
            return sorted(self._state.inflight)

    def _build(self, call: Any, gas: int | None) -> dict[str, Any]:
        state = self._state
        if state.next_nonce is None:
            pending = int(self.w3.eth.get_transaction_count(self.account.address, "pending"))
            ahead = max(state.inflight, default=-1) + 1
            state.next_nonce = max(pending, ahead)
        base: TxParams = {
            "from": self.account.address,
            "nonce": state.next_nonce,  # type: ignore[typeddict-item]
            "chainId": self.chain_id,
        }
        if gas is not None:
            base["gas"] = gas
        # Estimated against the pending block: the one the transaction will be mined in (on
        # Anvil, the one a pinned next timestamp applies to).
        if isinstance(call, dict):
            tx: TxParams = {**base, **call}
            if "gas" not in tx:
                tx["gas"] = self.w3.eth.estimate_gas(tx, "pending")
        else:
            if "gas" not in base:
                base["gas"] = call.estimate_gas(base, block_identifier="pending")
            # Fee fields given here keep web3 from asking the node for its own.
            priced = {**base, "maxFeePerGas": 1, "maxPriorityFeePerGas": 1}
            tx = call.build_transaction(priced)
        built: dict[str, Any] = dict(tx)
        kept = {k: built[k] for k in _KEPT_FIELDS if k in built}
        if isinstance(kept.get("data"), bytes):
            kept["data"] = "0x" + bytes(kept["data"]).hex()
        kept["value"] = int(kept.get("value", 0))
        return kept

    def _sign(self, entry: _InFlight) -> None:
        """Sign ``entry`` with its current fees: its raw bytes and one more hash."""
        signed = self.account.sign_transaction({**entry.fields, **entry.fees.fields()})
        entry.raw = "0x" + bytes(signed.raw_transaction).hex()
        tx_hash = "0x" + bytes(signed.hash).hex()
        if tx_hash not in entry.hashes:
            entry.hashes.append(tx_hash)
        entry.sent_at = time.time()

    # ---------------------------------------------------------------- waiting
    def _await(self, entry: _InFlight) -> TxReceipt:
        start = time.monotonic()
        checked = start
        while True:
            try:
                receipt = self._receipt_of(entry)
                if receipt is not None and self._confirmed(receipt):
                    self._finished(entry)
                    if receipt["status"] != 1:
                        self._raise_revert(entry.fields, receipt)
                    return receipt
                now = time.monotonic()
                if receipt is None and now - checked >= min(1.0, self.policy.replace_after_s):
                    checked = now
                    with self._state.lock:
                        self._keep_moving(entry)
            except ChainError:
                raise
            except Exception as exc:
                raise translate_error(exc) from exc
            if time.monotonic() - start > self.receipt_timeout_s:
                raise TransactionStuck(
                    f"transaction {entry.hashes[-1]} (nonce {entry.nonce} of "
                    f"{self.account.address}) is not mined after {self.receipt_timeout_s:.0f}s"
                    f" and {len(entry.hashes) - 1} fee bump(s); it stays recorded and later "
                    "sends keep replacing it. If fees rose above the cap, raise "
                    f"{self.policy.fees.cap_setting}"
                )
            time.sleep(self.policy.poll_s)

    def wait(self, tx_hash: HexBytes, tx: TxParams) -> TxReceipt:
        """Wait for a transaction sent elsewhere (no replacement: its key is not ours)."""
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.receipt_timeout_s
            )
        except Exception as exc:
            raise translate_error(exc) from exc
        if receipt["status"] != 1:
            self._raise_revert(dict(tx), receipt)
        return receipt

    def _receipt_of(self, entry: _InFlight) -> TxReceipt | None:
        for tx_hash in reversed(entry.hashes):
            try:
                receipt = self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                continue
            if receipt is not None and receipt.get("blockNumber") is not None:
                return receipt
        return None

    def _confirmed(self, receipt: TxReceipt) -> bool:
        needed = self.policy.confirmations
        return needed <= 0 or int(self.w3.eth.block_number) >= receipt["blockNumber"] + needed

    def _finished(self, entry: _InFlight) -> None:
        """Forget ``entry`` and every lower nonce (mined too, since ours is)."""
        with self._state.lock:
            done = [n for n in self._state.inflight if n <= entry.nonce]
            for nonce in done:
                del self._state.inflight[nonce]
            if done:
                self._save()

    def _keep_moving(self, entry: _InFlight) -> None:
        """Re-send or replace ``entry`` and every earlier nonce of ours that holds it up.
        Called with the lock held."""
        mined = int(self.w3.eth.get_transaction_count(self.account.address, "latest"))
        for nonce in sorted(self._state.inflight):
            if mined <= nonce < entry.nonce:
                self._unstick(self._state.inflight[nonce])
        if mined <= entry.nonce:
            self._unstick(entry)

    def _unstick(self, entry: _InFlight) -> None:
        known = self._known(entry.hashes[-1])
        overdue = time.time() - entry.sent_at >= self.policy.replace_after_s
        if known and not overdue:
            return
        if not known:
            try:
                self.w3.eth.send_raw_transaction(HexStr(entry.raw))
                log.warning(
                    "nonce %d: the node had lost %s; sent again", entry.nonce, entry.hashes[-1]
                )
                self._state.resent += 1
                entry.sent_at = time.time()
                self._save()
                return
            except Exception as exc:  # underpriced now, or mined meanwhile: try a replacement
                log.info("nonce %d: re-sending %s failed: %s", entry.nonce, entry.hashes[-1], exc)
        try:
            fresh = suggest_fees(self.w3, self.policy.fees)
        except FeeAboveCap as exc:
            log.warning("nonce %d is stuck and cannot be replaced: %s", entry.nonce, exc)
            return
        raised = bump(entry.fees, fresh, self.policy.fees)
        if raised is None:
            log.warning(
                "nonce %d is stuck: a replacement would need more than the cap (%s)",
                entry.nonce,
                self.policy.fees.cap_setting,
            )
            return
        before = (entry.fees, entry.raw, list(entry.hashes), entry.sent_at)
        entry.fees = raised
        self._sign(entry)
        try:
            self.w3.eth.send_raw_transaction(HexStr(entry.raw))
        except Exception as exc:  # refused (mined meanwhile, or not enough of a bump)
            entry.fees, entry.raw, entry.hashes, entry.sent_at = before
            log.info("nonce %d: replacement refused: %s", entry.nonce, exc)
            return
        self._state.replaced += 1
        log.warning(
            "nonce %d: replaced with max fee %d, priority %d wei/gas (%s)",
            entry.nonce,
            raised.max_fee,
            raised.priority_fee,
            entry.hashes[-1],
        )
        self._save()

    def _known(self, tx_hash: str) -> bool:
        try:
            return self.w3.eth.get_transaction(HexBytes(tx_hash)) is not None
        except TransactionNotFound:
            return False

    # ---------------------------------------------------------------- journal
    def _load(self) -> None:
        """Read the journal once per process; re-send what the node has lost. Lock held."""
        state = self._state
        if state.loaded:
            return
        state.loaded = True
        if state.journal is None or not state.journal.exists():
            return
        try:
            data = json.loads(state.journal.read_text())
            if data.get("version") != JOURNAL_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {JOURNAL_VERSION}")
            entries = [_InFlight.from_json(e) for e in data["inflight"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ChainError(
                f"transaction journal {state.journal} is unreadable ({exc}); it records the "
                "nonces this account has in flight: repair it, or remove it once every "
                "transaction it lists is mined or abandoned"
            ) from exc
        mined = int(self.w3.eth.get_transaction_count(self.account.address, "latest"))
        for entry in entries:
            if entry.nonce < mined:
                continue
            state.inflight[entry.nonce] = entry
            if not self._known(entry.hashes[-1]):
                try:
                    self.w3.eth.send_raw_transaction(HexStr(entry.raw))
                except Exception as exc:
                    log.info("nonce %d from the journal not re-sent: %s", entry.nonce, exc)
        self._save()

    def _save_or_log(self) -> None:
        try:
            self._save()
        except OSError as exc:
            log.error("transaction journal %s not written: %s", self._state.journal, exc)

    def _save(self) -> None:
        state = self._state
        if state.journal is None:
            return
        body = {
            "version": JOURNAL_VERSION,
            "chain_id": self.chain_id,
            "address": self.account.address,
            "inflight": [state.inflight[n].to_json() for n in sorted(state.inflight)],
        }
        write_atomic(state.journal, json.dumps(body, indent=1).encode())

    def _raise_revert(self, tx: dict[str, Any], receipt: TxReceipt) -> None:
        """Replay a mined failure as a call on the pending block to learn its reason: the
        state the failure left (it changed nothing) at a time no earlier than its block's."""
        replay = {k: v for k, v in tx.items() if k in ("to", "data", "value", "gas")}
        replay["from"] = self.account.address
        try:
            self.w3.eth.call(replay, "pending")  # type: ignore[arg-type]
        except Exception as exc:
            raise translate_error(exc) from exc
        raise ChainError(f"transaction {receipt['transactionHash'].hex()} reverted")
