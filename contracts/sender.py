"""Sign transactions locally and send them with a nonce counter safe for concurrent senders.

Every :class:`TxSender` for the same (chain, address) in this process shares one lock and
one local nonce counter, so threads sending from one account never reuse a nonce; the
counter is resynced from the node (``pending`` count) whenever a send fails.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.types import TxParams, TxReceipt

from contracts.errors import translate_error
from protocol.errors import ChainError

DEFAULT_RECEIPT_TIMEOUT_S = 60.0


@dataclass
class _NonceState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_nonce: int | None = None


_STATES: dict[tuple[int, str], _NonceState] = {}
_STATES_LOCK = threading.Lock()


def _state_for(chain_id: int, address: str) -> _NonceState:
    with _STATES_LOCK:
        return _STATES.setdefault((chain_id, address), _NonceState())


class TxSender:
    """Sends transactions from one local account; :meth:`send` waits for the receipt."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        chain_id: int,
        receipt_timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.chain_id = chain_id
        self.receipt_timeout_s = receipt_timeout_s
        self._state = _state_for(chain_id, account.address)

    def send(self, call: Any, gas: int | None = None) -> TxReceipt:
        """Estimate (which surfaces custom errors by name), sign, send, wait for the receipt.

        ``call`` is a bound contract function (``contract.functions.f(...)``) or a dict of
        raw transaction fields (``data`` and no ``to`` deploys a contract).
        """
        with self._state.lock:
            try:
                tx = self._build(call, gas)
                signed = self.account.sign_transaction(tx)  # type: ignore[arg-type]
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Exception as exc:
                self._state.next_nonce = None  # resync from the node next time
                raise translate_error(exc) from exc
            assert self._state.next_nonce is not None
            self._state.next_nonce += 1
        return self.wait(tx_hash, tx)

    def wait(self, tx_hash: HexBytes, tx: TxParams) -> TxReceipt:
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.receipt_timeout_s
            )
        except Exception as exc:
            raise translate_error(exc) from exc
        if receipt["status"] != 1:
            self._raise_revert(tx, receipt)
        return receipt

    def _build(self, call: Any, gas: int | None) -> TxParams:
        if self._state.next_nonce is None:
            self._state.next_nonce = self.w3.eth.get_transaction_count(
                self.account.address, "pending"
            )
        base: TxParams = {
            "from": self.account.address,
            "nonce": self._state.next_nonce,  # type: ignore[typeddict-item]
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
            tx = call.build_transaction(base)
        if "maxFeePerGas" not in tx and "gasPrice" not in tx:
            tx["gasPrice"] = self.w3.eth.gas_price
        return tx

    def _raise_revert(self, tx: TxParams, receipt: TxReceipt) -> None:
        """Replay a mined failure as a call on the pending block to learn its reason: the
        state the failure left (it changed nothing) at a time no earlier than its block's."""
        replay = {k: v for k, v in tx.items() if k in ("from", "to", "data", "value", "gas")}
        try:
            self.w3.eth.call(replay, "pending")  # type: ignore[arg-type]
        except Exception as exc:
            raise translate_error(exc) from exc
        raise ChainError(f"transaction {receipt['transactionHash'].hex()} reverted")
