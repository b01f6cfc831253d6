"""A provider's standing on chain: registration and stake, and the commands that change it.

Every function takes a :class:`ProviderChain` (the part of
:class:`contracts.client.ChainClient` a provider uses) acting for the provider's own
account, so the CLI, the daemon and tests share one code path. Calls are synchronous;
async callers run them in a worker thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from contracts.client import MarketParams
from contracts.errors import InsufficientGasMoney
from contracts.models import JobInfo, ProviderInfo, Receipt
from protocol.errors import ChainError
from protocol.ids import Address, JobId, Wei, format_tokens
from provider_node.fallback import FallbackChain

log = logging.getLogger(__name__)


class ProviderChain(FallbackChain, Protocol):
    """What the provider daemon needs from the chain, acting as ``address`` (the on-chain
    commit and reveal calls come from :class:`FallbackChain`)."""

    @property
    def address(self) -> Address: ...

    def now(self) -> int: ...
    def token_balance(self, owner: str) -> Wei: ...
    def register(self, group: int = 0) -> Receipt: ...
    def stake(self, amount: int) -> Receipt: ...
    def request_unbond(self, amount: int) -> Receipt: ...
    def withdraw(self) -> Receipt: ...
    def provider_info(self, provider: str) -> ProviderInfo: ...
    def gas_shortfall(self, gas: int) -> InsufficientGasMoney | None: ...
    def market_params(self) -> MarketParams:
        """The market's ``stakeFactor`` (an accepted seat locks ``stakeFactor x price``)..."""
        ...

    def get_job(self, job_id: JobId) -> JobInfo: ...


GAS_BOUNDS: dict[str, int] = {
    "register": 80_000,
    "stake": 120_000,
    "unbond": 80_000,
    "withdraw": 70_000,
}
"""Most gas each provider action may use. ``bench/gas.py`` measured 48,553 (register),
81,057 (stake with permit), 54,772 (request unbond) and 42,126 (withdraw) with warm
storage; first writes to cold storage add up to about 22,000 more."""
FALLBACK_GAS_PER_JOB = 260_000
"""Gas to commit and reveal one job on chain when its coordinator is gone: measured
82,845 + 115,484 with warm storage, plus cold-storage headroom."""


def pay_gas(chain: ProviderChain, action: str) -> None:
    """Refuse ``action`` before sending anything when the account cannot pay its gas."""
    short = chain.gas_shortfall(GAS_BOUNDS[action])
    if short is not None:
        raise short


def fallback_gas_warning(chain: ProviderChain, jobs: int) -> str | None:
    """Why the account could not commit and reveal ``jobs`` running jobs on chain itself
    (as it must when their coordinator vanishes); None when it can."""
    short = chain.gas_shortfall(FALLBACK_GAS_PER_JOB * max(jobs, 1))
    if short is None:
        return None
    return (
        f"{short.account} holds {short.balance_wei / 1e18:.6f} ETH of gas money, less than the "
        f"{short.needed_wei / 1e18:.6f} ETH that committing and revealing {max(jobs, 1)} "
        "job(s) on chain may cost if their coordinator vanishes: send it some of the chain's "
        "native token"
    )


class InsufficientFunds(ChainError):
    """The account holds too few tokens to bond the stake it was asked to keep."""

    def __init__(self, address: str, needed: int, balance: int) -> None:
        self.address = address
        self.needed = needed
        self.balance = balance
        self.missing = needed - balance
        super().__init__(
            f"{address} needs {format_tokens(needed)} tokens to reach its stake but holds "
            f"{format_tokens(balance)}: {format_tokens(self.missing)} tokens are missing "
            "(fund the account, or lower PROVIDER_STAKE)"
        )


@dataclass(frozen=True)
class StakeReport:
    """What :func:`ensure_staked` found and did."""

    info: ProviderInfo
    registered_now: bool
    staked_now: Wei


def status(chain: ProviderChain) -> ProviderInfo:
    """The provider's registry record."""
    return chain.provider_info(chain.address)


def register(chain: ProviderChain, group: int = 0) -> Receipt:
    """Register the account as a provider (``group``: its declared operator group)."""
    pay_gas(chain, "register")
    return chain.register(group)


def stake(chain: ProviderChain, amount: Wei) -> Receipt:
    """Bond ``amount`` more tokens, refusing early when the balance cannot cover it."""
    balance = chain.token_balance(chain.address)
    if balance < amount:
        raise InsufficientFunds(chain.address, amount, balance)
    pay_gas(chain, "stake")
    return chain.stake(amount)


def unbond(chain: ProviderChain, amount: Wei) -> Receipt:
    """Start unbonding ``amount`` of free stake; it can be withdrawn after the delay."""
    pay_gas(chain, "unbond")
    return chain.request_unbond(amount)


def withdraw(chain: ProviderChain) -> Receipt:
    """Take back stake whose unbonding delay has passed."""
    pay_gas(chain, "withdraw")
    return chain.withdraw()


def ensure_staked(chain: ProviderChain, target: Wei, group: int = 0) -> StakeReport:
    """Register if needed and top the bonded stake up to ``target``.

    Stake already bonded (locked by assignments or not) counts toward the target; a
    balance too small for the difference raises :class:`InsufficientFunds` naming the
    missing amount before any transaction is sent.
    """
    info = chain.provider_info(chain.address)
    registered_now = False
    if not info.registered:
        log.info("registering %s as a provider", chain.address)
        pay_gas(chain, "register")
        chain.register(group)
        registered_now = True
    missing = Wei(max(0, target - info.stake))
    if missing:
        balance = chain.token_balance(chain.address)
        if balance < missing:
            raise InsufficientFunds(chain.address, missing, balance)
        log.info(
            "bonding %s more tokens (target %s)", format_tokens(missing), format_tokens(target)
        )
        pay_gas(chain, "stake")
        chain.stake(missing)
    if registered_now or missing:
        info = chain.provider_info(chain.address)
    return StakeReport(info=info, registered_now=registered_now, staked_now=missing)
