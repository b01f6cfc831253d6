"""Chain errors: one class per Solidity custom error, plus RPC and revert failures.

::

    ChainError (protocol.errors)
    ├── RpcError                the node is unreachable, timed out or refused the request
    │   └── TransactionStuck    sent, but not mined in time even after fee bumps
    ├── FeeAboveCap             the fee the chain asks is above the configured cap
    ├── InsufficientGasMoney    the account cannot pay for a transaction's gas
    ├── TransactionReverted     a revert without a known custom error (panic, plain revert)
    ├── ValueOutOfRange         an argument does not fit its Solidity type
    └── ContractError           a contract's custom error; ``fields`` holds its decoded args
        ├── JobNotFound, WrongStatus, NotCoordinator, ...   (JobMarket)
        ├── ProviderNotRegistered, InsufficientFreeStake, ... (registry half)
        └── InsufficientBalance, InvalidPermitSignature, ...  (TestUSD)

:func:`translate_error` maps web3's exceptions onto this tree; the mapping from 4-byte
selectors to classes is built from the committed ABIs, and every custom error in them has a
class here (a test checks it).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, ClassVar

from eth_abi import decode
from eth_utils import keccak

from protocol.errors import ChainError


class RpcError(ChainError):
    """The JSON-RPC node failed: unreachable, timed out, or it rejected the request."""


class TransactionStuck(RpcError):
    """A transaction was sent (and replaced with higher fees where the cap allowed) but is
    still not mined; its nonce stays reserved and the sender keeps it in its journal."""


class FeeAboveCap(ChainError):
    """The fee a transaction would need now is above the configured cap: nothing is sent."""

    def __init__(self, *, needed_wei: int, cap_wei: int, setting: str) -> None:
        self.needed_wei = needed_wei
        self.cap_wei = cap_wei
        self.setting = setting
        super().__init__(
            f"the chain asks {_gwei(needed_wei)} gwei per gas (base fee + priority fee) but "
            f"the cap is {_gwei(cap_wei)} gwei; nothing was sent. Raise {setting} or retry "
            "when fees fall"
        )


class InsufficientGasMoney(ChainError):
    """The account's native balance cannot pay gas x max fee (+ value): nothing is sent."""

    def __init__(self, *, account: str, needed_wei: int, balance_wei: int) -> None:
        self.account = account
        self.needed_wei = needed_wei
        self.balance_wei = balance_wei
        super().__init__(
            f"account {account} has {balance_wei / 1e18:.6f} ETH but this transaction may "
            f"cost up to {needed_wei / 1e18:.6f} ETH in gas; nothing was sent. Send the "
            "account some of the chain's native token for gas"
        )


def _gwei(wei: int) -> str:
    return f"{wei / 1e9:.9f}".rstrip("0").rstrip(".")


class TransactionReverted(ChainError):
    """A call or transaction reverted without one of the contracts' custom errors."""


class ValueOutOfRange(ChainError):
    """An argument cannot be encoded as its Solidity type (e.g. a negative amount)."""


class ContractError(ChainError):
    """A contract reverted with a custom error. ``fields`` maps each Solidity argument name
    to its decoded value; the same values are attributes in snake_case."""

    error_name: ClassVar[str] = ""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields
        for key, value in fields.items():
            setattr(self, _snake(key), value)
        shown = ", ".join(f"{k}={_show(v)}" for k, v in fields.items())
        super().__init__(f"{self.error_name or type(self).__name__}({shown})")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.error_name = cls.__name__


# TestUSD
class InsufficientBalance(ContractError):
    """The token holder's balance is below the amount moved."""


class InsufficientAllowance(ContractError):
    """The spender's allowance (or permit) is below the amount moved."""


class InvalidRecipient(ContractError):
    """Tokens cannot be sent to the zero address."""


class PermitExpired(ContractError):
    """The permit's deadline has passed."""


class InvalidPermitSignature(ContractError):
    """The permit was not signed by the token owner (or its nonce was used)."""


class NotMinter(ContractError):
    """Only the token's deployer can mint."""


# registry (JobMarketExt)


class AlreadyRegistered(ContractError):
    """The provider address is already registered."""


class ProviderNotRegistered(ContractError):
    """The address is not a registered provider."""


class ZeroAmount(ContractError):
    """An amount of zero was given where a positive one is needed."""


class StakeOverflow(ContractError):
    """The stake would not fit 64 bits."""


class InsufficientFreeStake(ContractError):
    """Stake not locked by assignments is below what is needed."""


class StakeBelowMinimum(ContractError):
    """The provider's stake is below the registry's minimum for assignment."""


class NothingToWithdraw(ContractError):
    """The provider has no unbonding stake."""


class UnbondingNotReady(ContractError):
    """The unbonding delay has not passed yet (``ready_at`` is when it does)."""


class DuplicateProvider(ContractError):
    """The same provider appears twice in one job's assignment."""


class SameOperatorGroup(ContractError):
    """Two providers of one operator group were assigned to the same job."""


class TokenTransferFailed(ContractError):
    """The payment token refused a transfer."""


# JobMarket
class InvalidRedundancy(ContractError):
    """Redundancy must be 1 to 5."""


class InvalidMode(ContractError):
    """The comparison mode is neither exact (0) nor tolerance (1)."""


class InvalidPriceCap(ContractError):
    """The price cap is zero or too large for the locked stake to fit 64 bits."""


class InvalidSpecCid(ContractError):
    """The spec CID is empty or longer than 128 bytes."""


class InvalidDeadlines(ContractError):
    """The job's time shape is invalid (assign/spare/settle deadlines, windows, 90-day limit)."""


class JobNotFound(ContractError):
    """No job has this id."""


class WrongStatus(ContractError):
    """The job's status does not allow this operation."""


class NotCoordinator(ContractError):
    """Only the job's coordinator can do this."""


class NotRequester(ContractError):
    """Only the job's requester can do this."""


class AssignDeadlinePassed(ContractError):
    """The job's assign deadline has passed."""


class SettleDeadlinePassed(ContractError):
    """The job's settle deadline has passed; only reclaim is left."""


class ReclaimTooEarly(ContractError):
    """The escrow can be reclaimed only after the deadline given."""


class LengthMismatch(ContractError):
    """Parallel lists (providers, prices, signed entries) differ in length."""


class TooManyProviders(ContractError):
    """A job takes at most redundancy + 2 seats."""


class NothingToAssign(ContractError):
    """The assignment list adds no provider."""


class PriceAboveCap(ContractError):
    """A provider's price exceeds the job's price cap."""


class RecordMismatch(ContractError):
    """The terms or assignment given do not match the job's on-chain commitment."""


class InvalidSignatureKind(ContractError):
    """A settlement entry's kind is not none (0), reveal (1) or commit (2)."""


class InvalidSignature(ContractError):
    """A Commit or Reveal signature was not made by the provider it names."""


class InvalidWinners(ContractError):
    """The winners mask is not allowed (exact job) or names a provider without a reveal."""


class NoMajority(ContractError):
    """No result has a strict majority of max(signed entries, redundancy)."""


class BatchTooLarge(ContractError):
    """A settle batch holds more jobs than the market allows."""


class NothingToClaim(ContractError):
    """The account has nothing credited."""


class NotAssignedProvider(ContractError):
    """Only the provider at that assignment index may commit or reveal on chain."""


class CommitDeadlinePassed(ContractError):
    """The job's commit deadline has passed."""


class AlreadyCommitted(ContractError):
    """The provider already committed on chain for this assignment."""


class AlreadyRevealed(ContractError):
    """The on-chain commitment was already revealed."""


class RevealMismatch(ContractError):
    """The reveal's commitment hash differs from the seat's on-chain commit."""


class FinalizeTooEarly(ContractError):
    """Anyone may finalize only after the settle deadline."""


class MajorityExists(ContractError):
    """On-chain reveals hold a majority: the job must be finalized, not reclaimed."""


class AmountOverflow(ContractError):
    """A credited amount does not fit 96 bits."""


class DirectCall(ContractError):
    """The market's extension was called directly; call the market's address instead."""


class InsufficientBond(ContractError):
    """The coordinator's bond is below the amount asked to unbond."""


class TokenDecimals(ContractError):
    """The payment token does not have 6 decimals."""


class InvalidConstructorArgument(ContractError):
    """A constructor argument is out of range (``name`` says which)."""


class CoordinatorNotBonded(ContractError):
    """The job's coordinator holds less than the minimum coordinator bond."""


class InvalidTimeout(ContractError):
    """timeoutMs must be > 0 and <= commitWindow * 1000."""


class SpareDeadlinePassed(ContractError):
    """More seats only until min(spareDeadline, reveal opening) (``deadline``)."""


class SettleTooEarly(ContractError):
    """Before the reveal window closed, a live seat has no vote (or carries a COMMIT entry)."""


class PriceBelowMinimum(ContractError):
    """A seat's price is below the market's minimum price."""


class InvalidRate(ContractError):
    """A seat's ratePerHour is zero."""


class OfferExpired(ContractError):
    """The provider's Accept expired before the assignment."""


class InvalidAccept(ContractError):
    """The offer's Accept signature is not the provider's for this job, seat and terms."""


class InvalidReceipt(ContractError):
    """The CommitReceipt was not signed by the job's coordinator over that commit hash."""


class RevealNotOpen(ContractError):
    """On-chain reveals open only after every seat's commit deadline (``opens_at``)."""


class RevealWindowClosed(ContractError):
    """The on-chain reveal window closed at ``closed_at``."""


class CommittedOnChain(ContractError):
    """A seat committed or revealed on chain: the job can no longer be aborted."""


class Reentrancy(ContractError):
    """A market function was re-entered."""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)


def _all_error_classes() -> dict[str, type[ContractError]]:
    found: dict[str, type[ContractError]] = {}
    stack = list(ContractError.__subclasses__())
    while stack:
        cls = stack.pop()
        found[cls.__name__] = cls
        stack.extend(cls.__subclasses__())
    return found


@cache
def error_table() -> dict[bytes, tuple[type[ContractError], list[str], list[str]]]:
    """selector -> (class, argument names, argument types) for every ABI custom error."""
    from contracts.abi import all_abis

    classes = _all_error_classes()
    table: dict[bytes, tuple[type[ContractError], list[str], list[str]]] = {}
    for abi in all_abis():
        for item in abi:
            if item.get("type") != "error":
                continue
            types = [i["type"] for i in item["inputs"]]
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            cls = classes.get(item["name"])
            if cls is None:
                raise RuntimeError(f"contracts.errors has no class for {item['name']}")
            table[selector] = (cls, [i["name"] for i in item["inputs"]], types)
    return table


def decode_revert(data: bytes) -> ChainError:
    """Map raw revert data onto the custom error it encodes, or TransactionReverted."""
    entry = error_table().get(bytes(data[:4]))
    if entry is None:
        return TransactionReverted(f"reverted with unknown data 0x{bytes(data).hex()}")
    cls, names, types = entry
    try:
        values = decode(types, bytes(data[4:]))
    except Exception:
        return TransactionReverted(f"cannot decode {cls.__name__} data 0x{bytes(data).hex()}")
    return cls(**{n: _plain(v) for n, v in zip(names, values, strict=True)})


def _plain(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        from eth_utils import to_checksum_address

        return to_checksum_address(value)
    return value


def translate_error(exc: BaseException) -> ChainError:
    """Turn any exception from web3 or the HTTP stack into a ChainError subclass."""
    from web3.exceptions import (
        ContractCustomError,
        ContractLogicError,
        ContractPanicError,
        TimeExhausted,
        Web3RPCError,
        Web3TypeError,
        Web3ValidationError,
        Web3ValueError,
    )

    if isinstance(exc, ChainError):
        return exc
    if isinstance(exc, ContractCustomError):
        data = exc.data if isinstance(exc.data, str) else getattr(exc, "message", "")
        raw = bytes.fromhex(str(data).removeprefix("0x"))
        return decode_revert(raw)
    if isinstance(exc, ContractPanicError):
        return TransactionReverted(f"panic: {exc}")
    if isinstance(exc, ContractLogicError):
        return TransactionReverted(str(exc))
    if isinstance(exc, TimeExhausted):
        return RpcError(f"timed out waiting for a receipt: {exc}")
    if isinstance(exc, Web3RPCError):
        return RpcError(f"node rejected the request: {exc}")
    if isinstance(exc, Web3ValidationError | Web3TypeError | Web3ValueError | OverflowError):
        return ValueOutOfRange(str(exc))
    if isinstance(exc, ConnectionError | OSError | TimeoutError):
        return RpcError(f"cannot reach the node: {exc}")
    name = type(exc).__name__
    if "Connection" in name or "Timeout" in name:  # requests / aiohttp variants
        return RpcError(f"cannot reach the node: {exc}")
    return ChainError(f"{name}: {exc}")
