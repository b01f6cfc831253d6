"""Claiming: move what the market owes an account out of the market contract.

The market never pushes tokens. Refunds and unspent escrow (a requester's), fees (a
coordinator's) and pay (a provider's, kept beside its stake) stay in the contract as
claimable balances until the account calls ``claim()``, which pays all of them in one
transfer. This works the same for every role: one account, one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from contracts.chain import Web3Chain
from contracts.client import ChainClient
from contracts.errors import RpcError
from contracts.models import Receipt
from protocol.ids import Address, Wei, format_tokens
from wallet import jobs, keys
from wallet.settings import WalletSettings

READ_ONLY_KEY = "0x" + "11" * 32
"""Reads need a sender for the bindings, not a real key."""
NONCE_RETRIES = 3


@dataclass(frozen=True)
class Claimable:
    """What ``claim()`` would pay ``address`` now, by where it is kept."""

    address: Address
    credit: Wei
    """Market credit: refunds, unspent escrow, coordinator fees."""
    earnings: Wei
    """A provider's pay, kept beside its stake."""

    @property
    def total(self) -> Wei:
        return Wei(self.credit + self.earnings)


@dataclass(frozen=True)
class ClaimOutcome:
    """One claim, or the lack of one (``tx_hash`` None: nothing was claimable)."""

    due: Claimable
    tokens_before: Wei
    tokens_after: Wei
    claimed: Wei
    """The amount of the contract's ``Claimed`` event (0 when nothing was sent)."""
    tx_hash: str | None = None
    gas_used: int = 0

    @property
    def received(self) -> Wei:
        return Wei(self.tokens_after - self.tokens_before)

    def as_json(self) -> dict[str, object]:
        """Amounts in tokens as decimal strings (exact), like the other wallet commands."""
        return {
            "address": self.due.address,
            "claimable": format_tokens(self.due.total),
            "credit": format_tokens(self.due.credit),
            "earnings": format_tokens(self.due.earnings),
            "claimed": format_tokens(self.claimed),
            "tokens_before": format_tokens(self.tokens_before),
            "tokens_after": format_tokens(self.tokens_after),
            "received": format_tokens(self.received),
            "tx": self.tx_hash,
            "gas_used": self.gas_used,
        }


def claimable(chain: ChainClient, address: Address) -> Claimable:
    return Claimable(
        address,
        chain.account_info(address).owed,
        chain.provider_info(address).earned,
    )


def claim(chain: ChainClient) -> ClaimOutcome:
    """Claim everything owed to ``chain``'s own account in one transaction; with nothing
    owed, send nothing (the contract would revert ``NothingToClaim``)."""
    address = chain.address
    due = claimable(chain, address)
    before = chain.token_balance(address)
    if due.total == 0:
        return ClaimOutcome(due, before, before, Wei(0))
    receipt = _send_claim(chain)
    claimed = sum(int(e.args["amount"]) for e in receipt.named("Claimed"))
    return ClaimOutcome(
        due,
        before,
        chain.token_balance(address),
        Wei(claimed),
        receipt.tx_hash,
        receipt.gas_used,
    )


def claim_for(settings: WalletSettings, prompt: Callable[[str], str] | None = None) -> ClaimOutcome:
    """Claim for the account ``settings`` choose. The claimable amount is read first,
    without the password: when nothing is owed the keystore is never unlocked."""
    entry = keys.resolve_account(settings)
    if entry.address is not None:
        reader = Web3Chain(settings.need("rpc_url"), settings.deployment(), READ_ONLY_KEY)
        due = claimable(reader, entry.address)
        if due.total == 0:
            balance = reader.token_balance(entry.address)
            return ClaimOutcome(due, balance, balance, Wei(0))
    identity = keys.unlock(settings, prompt)
    return claim(jobs.chain_for(settings, identity))


def _send_claim(chain: ChainClient) -> Receipt:
    """``chain.claim()``, tried again when the node refuses the nonce: a coordinator or
    provider daemon running with the same key sends from another process, whose nonces
    this one cannot see. A refused transaction was never mined, and the sender reads the
    nonce from the node again after a refusal, so a retry claims once."""
    for attempt in range(1, NONCE_RETRIES + 1):
        try:
            return chain.claim()
        except RpcError as exc:
            if "nonce" not in str(exc).lower() or attempt == NONCE_RETRIES:
                raise
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")
