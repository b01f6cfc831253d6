"""Transaction fees: EIP-1559 fees from the chain's fee history, held under a cap.

:func:`suggest_fees` reads ``eth_feeHistory`` over the last few blocks: the next block's base
fee and a percentile of the priority fees recently paid. The offer is
``maxFeePerGas = 2 x next base fee + priority`` (room for six full blocks in a row) and never
more than the cap; when even ``next base fee + priority`` is above the cap, the transaction
could not be mined without paying more than allowed, so :class:`FeeAboveCap` is raised and
nothing is sent. A chain without base fees (pre-London) gets a legacy ``gasPrice`` under the
same cap. :func:`bump` raises a stuck transaction's fees by the 12.5% that nodes require of a
replacement (geth asks 10%, others 12.5%) plus one wei.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.errors import FeeAboveCap

GWEI = 10**9
REPLACEMENT_BUMP_PER_MILLE = 125
"""A replacement must raise both fees by this much (12.5%, the strictest node rule)."""


@dataclass(frozen=True)
class FeePolicy:
    """Caps and choices for the fees of every transaction one sender makes (wei per gas)."""

    max_fee_cap: int = 500 * GWEI
    """The most any transaction may offer per gas (base fee included)."""
    priority_fee_cap: int = 5 * GWEI
    """The most tip per gas; a higher suggestion is cut down to this, not refused."""
    priority_fee_floor: int = GWEI // 10
    """The least tip per gas, used when recent blocks paid none (an idle chain)."""
    priority_percentile: float = 50.0
    """Which percentile of the tips paid in recent blocks to match."""
    history_blocks: int = 10
    cap_setting: str = "the max fee cap (max_fee_gwei in the network profile)"
    """How to name the cap in errors: the setting a user changes to raise it."""


@dataclass(frozen=True)
class Fees:
    """The fee fields of one transaction: EIP-1559 (``gas_price`` None) or legacy."""

    max_fee: int
    priority_fee: int
    gas_price: int | None = None

    def fields(self) -> dict[str, int]:
        """The transaction fields these fees set (``gasPrice``, or the two EIP-1559 caps)."""
        if self.gas_price is not None:
            return {"gasPrice": self.gas_price}
        return {"maxFeePerGas": self.max_fee, "maxPriorityFeePerGas": self.priority_fee}

    def to_json(self) -> dict[str, int | None]:
        """The fees as the transaction journal stores them."""
        return {
            "max_fee": self.max_fee,
            "priority_fee": self.priority_fee,
            "gas_price": self.gas_price,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fees:
        """Fees read back from the transaction journal."""
        price = data.get("gas_price")
        return cls(
            int(data["max_fee"]), int(data["priority_fee"]), None if price is None else int(price)
        )


def fees_from_history(history: Any, policy: FeePolicy) -> Fees:
    """Fees for the next block from an ``eth_feeHistory`` answer (see the module docstring)."""
    base = int(history["baseFeePerGas"][-1])  # the block after the newest one: the next
    paid = sorted(int(row[0]) for row in (history.get("reward") or []) if row and int(row[0]) > 0)
    priority = paid[len(paid) // 2] if paid else 0
    priority = min(max(priority, policy.priority_fee_floor), policy.priority_fee_cap)
    needed = base + priority
    if needed > policy.max_fee_cap:
        raise FeeAboveCap(needed_wei=needed, cap_wei=policy.max_fee_cap, setting=policy.cap_setting)
    return Fees(max_fee=min(2 * base + priority, policy.max_fee_cap), priority_fee=priority)


def legacy_fees(gas_price: int, policy: FeePolicy) -> Fees:
    """A legacy ``gasPrice`` for a chain without base fees, under the same cap."""
    if gas_price > policy.max_fee_cap:
        raise FeeAboveCap(
            needed_wei=gas_price, cap_wei=policy.max_fee_cap, setting=policy.cap_setting
        )
    return Fees(max_fee=gas_price, priority_fee=gas_price, gas_price=gas_price)


def suggest_fees(w3: Any, policy: FeePolicy) -> Fees:
    """Fees for a transaction sent now (one ``eth_feeHistory`` call; ``eth_gasPrice`` on a
    chain that has no base fee)."""
    try:
        history = w3.eth.fee_history(policy.history_blocks, "latest", [policy.priority_percentile])
        has_base = bool(history.get("baseFeePerGas"))
    except Exception:  # a node without eth_feeHistory: fall back to eth_gasPrice
        has_base = False
    if not has_base:
        return legacy_fees(int(w3.eth.gas_price), policy)
    return fees_from_history(history, policy)


def _raised(value: int) -> int:
    return value + (value * REPLACEMENT_BUMP_PER_MILLE + 999) // 1000 + 1


def bump(old: Fees, fresh: Fees, policy: FeePolicy) -> Fees | None:
    """Fees for a replacement of a transaction sent with ``old``: at least 12.5% more on
    both fields, and at least what the chain asks now (``fresh``). None when that would
    exceed the cap (the old transaction can only wait, or fees must fall)."""
    if old.gas_price is not None:
        price = max(_raised(old.gas_price), fresh.gas_price or fresh.max_fee)
        if price > policy.max_fee_cap:
            return None
        return Fees(max_fee=price, priority_fee=price, gas_price=price)
    priority = max(_raised(old.priority_fee), fresh.priority_fee)
    max_fee = max(_raised(old.max_fee), fresh.max_fee, priority)
    if max_fee > policy.max_fee_cap:
        return None
    return Fees(max_fee=max_fee, priority_fee=priority)
