"""What every component needs from the chain: the :class:`ChainClient` Protocol.

A :class:`ChainClient` acts for one local account. ``contracts.chain.Web3Chain`` talks
JSON-RPC; ``contracts.fake.FakeChain`` implements the same Protocol in memory for unit
tests. Every failure is a ``ChainError``; contract reverts arrive as the named classes of
``contracts.errors`` with their decoded arguments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from contracts.errors import InsufficientGasMoney, translate_error
from contracts.models import (
    AcceptedSeat,
    AccountInfo,
    ChainEvent,
    CoordinatorInfo,
    Deployment,
    JobInfo,
    JobRequest,
    JobStatus,
    JobTerms,
    OnChainEntry,
    ProviderInfo,
    Receipt,
    Seat,
    Settlement,
)
from protocol.eip712 import Signature
from protocol.ids import Address, JobId, Wei

__all__ = ["ChainClient", "MarketParams", "wait_for_block"]


@dataclass(frozen=True)
class MarketParams:
    """The market's constructor parameters (immutable for a deployment)."""

    min_stake: Wei
    stake_factor: int
    min_price: Wei
    unbonding_delay: int
    min_coordinator_bond: Wei
    coordinator_unbond_delay: int


@runtime_checkable
class ChainClient(Protocol):
    """What every component needs from the chain, acting as ``address``.

    Methods that take a job id fetch the job's terms and seats themselves (from its events,
    cached), so callers never pass them; see ``contracts/README.md`` for the rules.
    """

    @property
    def address(self) -> Address:
        """The account this client acts as."""
        ...

    @property
    def deployment(self) -> Deployment:
        """The token, registry and market addresses it talks to."""
        ...

    # chain
    def block_number(self) -> int:
        """The latest block's number."""
        ...

    def market_params(self) -> MarketParams:
        """The market's constructor parameters (stake factor, minimum price, ...)."""
        ...

    def now(self) -> int:
        """Timestamp of the latest block (deadlines are compared against block time)."""
        ...

    def get_events(self, from_block: int, to_block: int) -> list[ChainEvent]:
        """Decoded logs of the contracts in [from_block, to_block], in chain order."""
        ...

    def block_timestamp(self, number: int) -> int:
        """The timestamp of block ``number``."""
        ...

    def block_hash(self, number: int) -> bytes | None:
        """The hash of block ``number`` on the chain as it is now; None if there is none."""
        ...

    def forget_job(self, job_id: JobId) -> None:
        """Drop what is cached about a job (its terms and seats): a reorganisation may
        have replaced its creation."""
        ...

    def gas_shortfall(self, gas: int) -> InsufficientGasMoney | None:
        """Why this account cannot pay ``gas`` units at today's fee; None when it can."""
        ...

    # token
    def token_balance(self, owner: str) -> Wei:
        """Tokens ``owner`` holds, in base units."""
        ...

    def mint(self, to: str, amount: int) -> Receipt:
        """Mint test tokens to ``to`` (TestUSD only; a real token refuses)."""
        ...

    def approve(self, spender: str, amount: int) -> Receipt:
        """Let ``spender`` move up to ``amount`` of this account's tokens."""
        ...

    def sign_permit(self, spender: str, value: int, deadline: int) -> Signature:
        """An EIP-2612 permit for ``spender`` (no transaction: the contract that takes the
        tokens submits it)."""
        ...

    # registry: providers
    def register(self, group: int = 0) -> Receipt:
        """Register the calling provider under operator ``group`` (two providers of one group
        never share a job)."""
        ...

    def stake(self, amount: int) -> Receipt:
        """Bond ``amount`` more as the calling provider's stake."""
        ...

    def request_unbond(self, amount: int) -> Receipt:
        """Start the unbonding delay for ``amount`` of free stake."""
        ...

    def withdraw(self) -> Receipt:
        """Take back stake whose unbonding delay has passed."""
        ...

    def provider_info(self, provider: str) -> ProviderInfo:
        """A provider's registration, stake (free, locked, unbonding) and counters."""
        ...

    # registry: coordinators
    def bond_coordinator(self, amount: int) -> Receipt:
        """Bond ``amount`` as a coordinator (permit signed here: one transaction)."""
        ...

    def request_coordinator_unbond(self, amount: int) -> Receipt:
        """Start the unbonding delay for ``amount`` of the coordinator's bond."""
        ...

    def withdraw_coordinator_bond(self) -> Receipt:
        """Take back bond whose unbonding delay has passed."""
        ...

    def coordinator_info(self, coordinator: str) -> CoordinatorInfo:
        """A coordinator's bond and unbonding state."""
        ...

    # market: requester
    def create_job(self, request: JobRequest) -> tuple[JobId, Receipt]:
        """Requester: escrow and open a job (permit signed here: one transaction)."""
        ...

    def cancel(self, job_id: JobId) -> Receipt:
        """Requester: cancel a job no provider was assigned to yet; the escrow is credited back."""
        ...

    def reclaim(self, job_id: JobId) -> Receipt:
        """Requester: refund an unassigned job after its assign deadline, or an undecided
        one after its settle deadline."""
        ...

    def claim(self) -> Receipt:
        """Move everything the market credits this account (pay, refunds, fees) to its tokens."""
        ...

    # market: coordinator
    def assign(self, job_id: JobId, offers: list[AcceptedSeat]) -> Receipt:
        """Append ``offers`` (each with its provider's Accept) to the job's seats."""
        ...

    def settle(self, settlement: Settlement) -> Receipt:
        """Coordinator: settle one job with the seats' signed entries and its verdict."""
        ...

    def settle_batch(self, settlements: list[Settlement]) -> Receipt:
        """Settle many jobs; invalid ones are skipped with a SettlementSkipped event."""
        ...

    def abort(self, job_id: JobId) -> Receipt:
        """Coordinator: end a job nobody committed to on chain; the requester gets it all."""
        ...

    # market: provider (and anyone, for reveals)
    def commit_on_chain(self, job_id: JobId, seat: int, commit_hash: bytes) -> Receipt:
        """The calling provider commits on chain itself (before its seat's commit deadline)."""
        ...

    def reveal_on_chain(
        self,
        job_id: JobId,
        seat: int,
        result: bytes,
        runtime_ms: int,
        salt: bytes,
        *,
        provider_signature: bytes = b"",
        receipt_signature: bytes = b"",
    ) -> Receipt:
        """Post a seat's reveal inside the reveal window (anyone may, with the provider's
        signature; the provider itself needs none)."""
        ...

    def finalize(self, job_id: JobId) -> Receipt:
        """Anyone, after the settle deadline: pay a job whose on-chain votes decide it."""
        ...

    # market: reads
    def on_chain_entry(self, job_id: JobId, seat: int) -> OnChainEntry:
        """What a seat put on chain itself: its commitment and its reveal."""
        ...

    def get_job(self, job_id: JobId) -> JobInfo:
        """Raises JobNotFound for an unknown id."""
        ...

    def job_status(self, job_id: JobId) -> tuple[JobStatus, int]:
        """The job's status and its number of seats."""
        ...

    def job_terms(self, job_id: JobId) -> JobTerms:
        """The job's immutable terms, from its JobCreated event."""
        ...

    def get_seats(self, job_id: JobId) -> list[Seat]:
        """The job's seats in order, from its ProviderAssigned events."""
        ...

    def account_info(self, account: str) -> AccountInfo:
        """What the market holds for ``account``: credit and earnings."""
        ...

    def claimable(self, account: str) -> Wei:
        """What ``claim`` would pay ``account`` now."""
        ...

    def burned(self) -> Wei:
        """Tokens the market burned so far (slashed stake goes nowhere else)."""
        ...


def wait_for_block(client: ChainClient, number: int, timeout_s: float = 30.0) -> None:
    """Poll until the chain reaches block ``number`` (for watchers in tests)."""
    stop = time.monotonic() + timeout_s
    while client.block_number() < number:
        if time.monotonic() > stop:
            raise translate_error(TimeoutError(f"block {number} not reached in {timeout_s}s"))
        time.sleep(0.05)
