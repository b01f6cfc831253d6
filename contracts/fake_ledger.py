"""The in-memory chain's base: clock, blocks, event log, the TestUSD token, market credits.

Part of the in-memory twin of the contracts (see ``contracts.fake_world``): every function
takes the caller first, like ``msg.sender``, checks everything before changing anything,
and raises the ``contracts.errors`` class the contract raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_utils import keccak

from contracts import errors as E
from contracts.models import ChainEvent, Deployment
from protocol import eip712
from protocol.errors import SignatureError
from protocol.ids import Address, parse_address

FAKE_TOKEN = parse_address("0x00000000000000000000000000000000000070c3")
FAKE_MARKET = parse_address("0x000000000000000000000000000000000000fa4e")
ZERO_ADDRESS = parse_address("0x" + "00" * 20)


@dataclass
class Account:
    """A party's market account (``owed`` is claimable; ``nonce`` the next job nonce)."""

    owed: int = 0
    lifetime: int = 0
    nonce: int = 0


class FakeLedger:
    """Block time, blocks, the event log, token balances and the market's credits."""

    def __init__(self, *, chain_id: int, start_time: int, minter: str | None) -> None:
        self.deployment = Deployment(chain_id, FAKE_TOKEN, FAKE_MARKET, FAKE_MARKET)
        self.minter = parse_address(minter) if minter else None
        self.time = start_time
        self.block = 1
        self.balances: dict[Address, int] = {}
        self.allowances: dict[tuple[Address, Address], int] = {}
        self.permit_nonces: dict[Address, int] = {}
        self.accounts: dict[Address, Account] = {}
        self.events: list[ChainEvent] = []
        # every block before the first write (genesis included) carries the start time
        self.block_times = dict.fromkeys(range(self.block + 1), start_time)
        self._tx = ""
        self._log_index = 0
        self._tx_count = 0

    # ------------------------------------------------------------------ clock
    @property
    def next_time(self) -> int:
        """The timestamp the next write is mined at."""
        return self.time + 1

    def advance(self, seconds: int) -> None:
        self.time += seconds

    def mine_next_at(self, timestamp: int) -> None:
        """Mine the next write at exactly ``timestamp`` (like ``evm_setNextBlockTimestamp``)."""
        if timestamp <= self.time:
            raise ValueError(f"timestamp {timestamp} is not after the latest block {self.time}")
        self.time = timestamp - 1

    def _mine(self, sender: Address) -> str:
        self.block += 1
        self.time += 1
        self.block_times[self.block] = self.time
        self._log_index = 0
        self._tx_count += 1
        self._tx = "0x" + keccak(text=f"{sender}:{self._tx_count}:{self.block}").hex()
        return self._tx

    def _emit(self, contract: str, name: str, **args: Any) -> None:
        self.events.append(ChainEvent(name, contract, args, self.block, self._tx, self._log_index))
        self._log_index += 1

    # ------------------------------------------------------------------ token
    def balance(self, who: str) -> int:
        return self.balances.get(parse_address(who), 0)

    def mint(self, sender: Address, to: str, amount: int) -> str:
        if self.minter is not None and sender != self.minter:
            raise E.NotMinter(caller=sender)
        dst = parse_address(to)
        if dst == ZERO_ADDRESS:
            raise E.InvalidRecipient(to=dst)
        tx = self._mine(sender)
        self.balances[dst] = self.balances.get(dst, 0) + amount
        self._emit("token", "Transfer", **{"from": ZERO_ADDRESS, "to": dst, "value": amount})
        return tx

    def approve(self, sender: Address, spender: str, amount: int) -> str:
        who = parse_address(spender)
        tx = self._mine(sender)
        self.allowances[(sender, who)] = amount
        self._emit("token", "Approval", owner=sender, spender=who, value=amount)
        return tx

    def _check_pull(self, owner: Address, amount: int, permit: bool) -> None:
        """What ``transferFrom(owner, market, amount)`` would refuse (after a permit for
        ``amount`` when ``permit``)."""
        allowed = amount if permit else self.allowances.get((owner, FAKE_MARKET), 0)
        if allowed < amount:
            raise E.InsufficientAllowance(spender=FAKE_MARKET, allowance=allowed, needed=amount)
        have = self.balances.get(owner, 0)
        if have < amount:
            raise E.InsufficientBalance(account=owner, balance=have, needed=amount)

    def _permit(self, owner: Address, amount: int) -> None:
        self.permit_nonces[owner] = self.permit_nonces.get(owner, 0) + 1
        self.allowances[(owner, FAKE_MARKET)] = amount
        self._emit("token", "Approval", owner=owner, spender=FAKE_MARKET, value=amount)

    def _pull(self, owner: Address, amount: int) -> None:
        self.allowances[(owner, FAKE_MARKET)] -= amount
        self._transfer(owner, FAKE_MARKET, amount)

    def _transfer(self, src: Address, dst: Address, amount: int) -> None:
        self.balances[src] = self.balances.get(src, 0) - amount
        self.balances[dst] = self.balances.get(dst, 0) + amount
        self._emit("token", "Transfer", **{"from": src, "to": dst, "value": amount})

    # ---------------------------------------------------------------- credits
    def account(self, who: str) -> Account:
        return self.accounts.get(parse_address(who), Account())

    def _credit(self, who: Address, amount: int) -> None:
        if amount:
            acct = self.accounts.setdefault(who, Account())
            acct.owed += amount
            acct.lifetime += amount


def signed(typed: dict[str, Any], signature: bytes, signer: Address) -> bool:
    """``_validSig``: 65 bytes, v 27/28, low s, and ecrecover gives ``signer``."""
    try:
        return eip712.recover_typed(typed, signature) == signer
    except SignatureError:
        return False


@cache
def _selectors() -> dict[type[E.ContractError], bytes]:
    return {cls: sel for sel, (cls, _, _) in E.error_table().items()}


def selector(error: E.ContractError) -> bytes:
    """The 4-byte selector of a custom error, as ``SettlementSkipped`` reports it."""
    return _selectors()[type(error)]
