"""``gpumarket job quote``: what a spec would cost and get if it were submitted now.

Nothing is paid or reserved: the coordinator matches the spec as a dry run (``POST /quote``)
and the wallet adds what only it knows: the escrow its fee makes (the contract's rule,
:func:`contracts.models.escrow_of`) and whether the account can pay it. ``createJob`` takes
the escrow from the token balance with a permit (or an approval it sends first), so the
balance decides; the allowance is shown for information.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.models import escrow_of
from protocol.errors import GpuMarketError
from protocol.ids import Wei, to_wei
from protocol.spec_io import check_local_inputs, load_spec
from protocol.views import Quote, QuoteOption
from wallet import keys
from wallet.coordinator import CoordinatorClient
from wallet.costs import read_only_chain
from wallet.jobs import DEFAULT_FEE, local_input_bytes
from wallet.settings import WalletSettings

SEATS = {"auto": 1, "2": 2, "3": 3}


class NoQuote(GpuMarketError):
    """``--cap auto`` found no provider to size the cap from."""

    def __init__(self, redundancy: str, reasons: dict[str, int]) -> None:
        self.redundancy, self.reasons = redundancy, reasons
        why = ", ".join(f"{n} {r}" for r, n in reasons.items()) or "empty book"
        super().__init__(f"no provider would take the job now (redundancy {redundancy}: {why})")


@dataclass
class Funds:
    address: str
    balance: int
    allowance: int
    eth_wei: int


@dataclass
class QuoteResult:
    """The coordinator's dry-run match with the escrow and affordability of each choice."""

    spec: Path
    fee: int
    market: Quote
    funds: Funds | None = None
    escrow: dict[str, int] = field(default_factory=dict)

    def option(self, redundancy: str) -> QuoteOption:
        return next(o for o in self.market.options if o.redundancy == redundancy)

    def requested(self) -> QuoteOption:
        return next(o for o in self.market.options if o.requested)

    def affordable(self, redundancy: str) -> bool | None:
        if self.funds is None:
            return None
        return self.funds.balance >= self.escrow[redundancy]

    def to_json(self) -> dict[str, Any]:
        market = self.market.model_dump(mode="json")
        options = []
        for o in market["options"]:
            label = o["redundancy"]
            options.append(
                {**o, "escrow": str(self.escrow[label]), "affordable": self.affordable(label)}
            )
        funds = None
        if self.funds is not None:
            f = self.funds
            funds = {
                "address": f.address,
                "balance": str(f.balance),
                "allowance": str(f.allowance),
                "eth_wei": str(f.eth_wei),
            }
        return {
            **{k: v for k, v in market.items() if k != "options"},
            "spec": str(self.spec),
            "fee": str(self.fee),
            "options": options,
            "funds": funds,
            "units": {"tokens": "token units, 6 decimals", "eth_wei": "wei"},
        }


def funds_of(settings: WalletSettings, address: str) -> Funds:
    chain = read_only_chain(settings)
    owner = chain.w3.to_checksum_address(address)
    market = chain.w3.to_checksum_address(chain.deployment.market)
    allowance = chain._read(lambda: chain.token.functions.allowance(owner, market).call())
    eth = chain._read(lambda: chain.w3.eth.get_balance(owner))
    return Funds(address, int(chain.token_balance(address)), int(allowance), int(eth))


def quote(settings: WalletSettings, spec_path: Path, *, fee: str = DEFAULT_FEE) -> QuoteResult:
    """Dry-run ``spec_path`` at the coordinator; add escrow per choice and the account's funds
    (skipped when no account is chosen)."""
    spec = load_spec(spec_path)  # the local checks first: size, schema, inputs present
    input_bytes = local_input_bytes(check_local_inputs(spec, spec_path.parent))
    with CoordinatorClient(settings.need("coordinator_url")) as client:
        market = client.quote(spec_path.read_text(), input_bytes=input_bytes)
    request_fee = to_wei(fee)
    cap = spec.price.max_per_provider
    result = QuoteResult(spec_path, request_fee, market)
    result.escrow = {label: escrow_of(n, cap, request_fee) for label, n in SEATS.items()}
    try:
        address = keys.address_of(settings, None)  # no prompt: funds are optional
    except GpuMarketError:
        return result
    result.funds = funds_of(settings, address)
    return result


def auto_cap(result: QuoteResult, margin: float) -> Wei:
    """A price cap from the quote: the dearest chosen provider's price plus ``margin``,
    never above the spec's own cap (the spec's cap stays the most the requester pays)."""
    if margin < 0:
        raise GpuMarketError(f"--cap-margin must not be negative: {margin}")
    option = result.requested()
    prices = [int(p.price) for p in option.providers]
    if not prices:
        raise NoQuote(option.redundancy, option.filtered)
    return Wei(min(math.ceil(max(prices) * (1 + margin)), int(result.market.price_cap)))
