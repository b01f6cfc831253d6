"""What a settled job pays: the contract's billing rule mirrored, and its real figures read back.

With ``m`` the smallest winning runtime, winner ``i`` is billed
``min(runtime_i, 2 * m, timeoutMs)`` milliseconds and paid
``min(price_i, ceil(ratePerHour_i * billed_i / 3_600_000))`` (``contracts/README.md``,
"Billing"; the rule's code is :mod:`contracts.rules`, shared with the in-memory chain).
:func:`bills` computes this before settling, to show what a verdict will pay;
once the chain settled, :func:`record_settlement` stores what ``JobSettled`` says it paid
(``paidAndBilled[i] = pay << 64 | billedMs``) and :func:`record_slash` what
``ProviderSlashed`` burned, so views always show the chain's figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.rules import billing_cap, pay_for, unpack_paid_and_billed
from coordinator.store import AsyncStore, ProviderSlot
from protocol.ids import parse_address
from protocol.lifecycle import Outcome


@dataclass(frozen=True)
class Bill:
    billed_ms: int
    pay: int


def bills(
    winners: Mapping[int, int], seats: Mapping[int, ProviderSlot], timeout_ms: int
) -> dict[int, Bill]:
    """Each winner's bill; ``winners`` maps a seat index to the runtime it voted with."""
    cap = billing_cap(winners.values(), timeout_ms)
    out: dict[int, Bill] = {}
    for idx, runtime in winners.items():
        seat = seats[idx]
        billed = min(runtime, cap)
        out[idx] = Bill(billed, pay_for(seat.price, seat.rate_per_hour, billed))
    return out


def unpack(paid_and_billed: Sequence[int]) -> list[Bill]:
    """``JobSettled.paidAndBilled`` per seat (zero for seats that were not paid)."""
    figures = (unpack_paid_and_billed(int(v)) for v in paid_and_billed)
    return [Bill(billed, pay) for pay, billed in figures]


def outcome_of(idx: int, winners: int, slash_mask: int) -> Outcome:
    if winners >> idx & 1:
        return Outcome.PAID
    if slash_mask >> idx & 1:
        return Outcome.SLASHED
    return Outcome.RELEASED


async def record_settlement(store: AsyncStore, job_id: str, args: Mapping[str, Any]) -> None:
    """Store a ``JobSettled`` event's outcome, pay and billed runtime per seat, and the refund."""
    winners = int(args["winners"])
    slash_mask = int(args["slashMask"])
    figures = unpack(list(args["paidAndBilled"]))
    for slot in await store.slots(job_id):
        if not slot.state.on_chain or slot.idx >= len(figures):
            continue
        outcome = outcome_of(slot.idx, winners, slash_mask)
        bill = figures[slot.idx]
        paid = outcome is Outcome.PAID
        await store.update_slot(
            job_id,
            slot.idx,
            outcome=outcome,
            pay=bill.pay if paid else None,
            billed_ms=bill.billed_ms if paid else None,
        )
    await store.update_job(job_id, refund=int(args["refund"]))


async def record_slash(store: AsyncStore, job_id: str, provider: str, amount: int) -> None:
    """Store what ``ProviderSlashed`` burned of a seat's stake."""
    who = parse_address(provider)
    for slot in await store.slots(job_id):
        if slot.state.on_chain and parse_address(slot.address) == who:
            await store.update_slot(job_id, slot.idx, outcome=Outcome.SLASHED, slashed=amount)
            return
