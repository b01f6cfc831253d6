"""Typed bindings over web3 for the token and the market: :class:`Web3Chain`.

:class:`Web3Chain` is the :class:`~contracts.client.ChainClient` that talks JSON-RPC,
signing locally for one account. Every failure is a ``ChainError``; contract reverts arrive
as the named classes of ``contracts.errors`` with their decoded arguments. The market
stores only a commitment to a job's terms and seats: ``Web3Chain`` reads them back from the
job's ``JobCreated`` and ``ProviderAssigned`` events (cached) and passes them in itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexAddress, HexStr
from web3 import Web3
from web3.exceptions import BlockNotFound
from web3.types import TxReceipt

from contracts.abi import (
    EMPTY_TERMS,
    CreatedJob,
    job_params_tuple,
    load_artifact,
    market_abi,
    seat_from_event,
    settlement_tuple,
)
from contracts.client import MarketParams
from contracts.deploy import TokenUnsuitable, connect, token_domain_separator
from contracts.errors import InsufficientGasMoney, JobNotFound, RpcError, translate_error
from contracts.events import EventDecoder
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
from contracts.rules import job_commitment, job_id_for, seat_chain
from contracts.sender import SendPolicy, TxSender
from protocol.eip712 import TOKEN_DOMAIN_VERSION, Signature, sign_permit
from protocol.ids import Address, JobId, Wei, parse_address

__all__ = [
    "Web3Chain",
    "job_commitment",
    "job_id_for",
    "seat_chain",
]

PERMIT_LIFETIME_S = 3600
_NO_PERMIT = (0, 0, b"\0" * 32, b"\0" * 32)  # deadline 0: the allowance is already given
_ZERO = "0x" + "00" * 20


class Web3Chain:
    """:class:`ChainClient` over JSON-RPC, signing locally with ``account``."""

    def __init__(
        self,
        rpc_url: str,
        deployment: Deployment,
        account: LocalAccount | str,
        *,
        w3: Web3 | None = None,
        policy: SendPolicy | None = None,
        journal_dir: Path | None = None,
        network: str | None = None,
    ) -> None:
        self.rpc_url = rpc_url
        # A client made here checks the node serves the deployment's chain; a given one was
        # checked (or made from the node's own chain id) by its maker.
        self.w3 = w3 if w3 is not None else connect(rpc_url, deployment.chain_id, network=network)
        self._account = account if isinstance(account, LocalAccount) else Account.from_key(account)
        self._deployment = deployment
        self.policy = policy
        self.journal_dir = journal_dir
        self.sender = TxSender(
            self.w3, self._account, deployment.chain_id, policy=policy, journal_dir=journal_dir
        )
        eth = self.w3.eth
        self.token = eth.contract(address=_cs(deployment.token), abi=load_artifact("TestUSD").abi)
        self.market = eth.contract(address=_cs(deployment.market), abi=market_abi())
        self.decoder = EventDecoder(deployment)
        self._created: dict[bytes, CreatedJob] = {}
        self._seats: dict[bytes, list[Seat]] = {}
        self._params: MarketParams | None = None
        self._token_name: str | None = None  # None until checked; "" when permits don't work

    def for_account(self, account: LocalAccount | str) -> Web3Chain:
        """Another client on the same connection acting for ``account``."""
        return Web3Chain(
            self.rpc_url,
            self._deployment,
            account,
            w3=self.w3,
            policy=self.policy,
            journal_dir=self.journal_dir,
        )

    @property
    def address(self) -> Address:
        return Address(self._account.address)

    @property
    def account(self) -> LocalAccount:
        return self._account

    @property
    def deployment(self) -> Deployment:
        return self._deployment

    # ------------------------------------------------------------------ chain
    def block_number(self) -> int:
        return int(self._read(lambda: self.w3.eth.block_number))

    def now(self) -> int:
        return int(self._read(lambda: self.w3.eth.get_block("latest")["timestamp"]))

    def next_block_time(self) -> int:
        """The time the next block will carry, to size deadlines a transaction sent now must
        meet. On an idle automine node (Anvil) the latest block can be minutes or hours old
        while the next one is stamped with the current time, so deadlines sized from
        :meth:`now` may already be past when the transaction is mined. The node's
        ``pending`` block knows (a pinned next timestamp included); without it, the local
        clock stands in."""
        latest = self.now()
        try:
            pending = int(self.w3.eth.get_block("pending")["timestamp"])
        except Exception:
            pending = int(time.time())
        return max(latest, pending)

    def get_events(self, from_block: int, to_block: int) -> list[ChainEvent]:
        d = self._deployment
        logs = self._read(
            lambda: self.w3.eth.get_logs(
                {
                    "fromBlock": from_block,
                    "toBlock": to_block,
                    "address": [_cs(a) for a in {d.token, d.market}],
                }
            )
        )
        return self._decoded(logs)

    def block_timestamp(self, number: int) -> int:
        """The timestamp of block ``number``."""
        return int(self._read(lambda: self.w3.eth.get_block(number)["timestamp"]))

    def block_hash(self, number: int) -> bytes | None:
        try:
            block = self.w3.eth.get_block(number)
        except BlockNotFound:
            return None
        except Exception as exc:
            raise translate_error(exc) from exc
        return bytes(block["hash"])

    def forget_job(self, job_id: JobId) -> None:
        self._created.pop(bytes(job_id), None)
        self._seats.pop(bytes(job_id), None)

    def gas_shortfall(self, gas: int) -> InsufficientGasMoney | None:
        return self._read(lambda: self.sender.gas_shortfall(gas))

    def market_params(self) -> MarketParams:
        if self._params is None:
            f = self.market.functions
            self._params = MarketParams(
                min_stake=Wei(self._call(f.minStake())),
                stake_factor=int(self._call(f.stakeFactor())),
                min_price=Wei(self._call(f.minPrice())),
                unbonding_delay=int(self._call(f.unbondingDelay())),
                min_coordinator_bond=Wei(self._call(f.minCoordinatorBond())),
                coordinator_unbond_delay=int(self._call(f.coordinatorUnbondDelay())),
            )
        return self._params

    # ------------------------------------------------------------------ token
    def token_balance(self, owner: str) -> Wei:
        return Wei(self._call(self.token.functions.balanceOf(parse_address(owner))))

    def mint(self, to: str, amount: int) -> Receipt:
        return self._send(self.token.functions.mint(parse_address(to), amount))

    def approve(self, spender: str, amount: int) -> Receipt:
        return self._send(self.token.functions.approve(parse_address(spender), amount))

    def sign_permit(self, spender: str, value: int, deadline: int) -> Signature:
        name = self._permit_token_name()
        if not name:
            raise TokenUnsuitable(
                f"token {self._deployment.token} does not accept EIP-2612 permits in the "
                f"domain (name(), version {TOKEN_DOMAIN_VERSION!r}); use approve()"
            )
        return self._sign_permit(name, spender, value, deadline)

    # --------------------------------------------------------------- registry
    def register(self, group: int = 0) -> Receipt:
        return self._send(self.market.functions.register(group))

    def stake(self, amount: int) -> Receipt:
        """Bond ``amount`` of stake: one transaction with a permit signed here (approve +
        stake when the token's permit domain is not the expected one)."""
        deadline, v, r, s = self._permit_for(amount)
        if deadline == 0:
            return self._send(self.market.functions.stake(amount))
        return self._send(self.market.functions.stakeWithPermit(amount, deadline, v, r, s))

    def request_unbond(self, amount: int) -> Receipt:
        return self._send(self.market.functions.requestUnbond(amount))

    def withdraw(self) -> Receipt:
        return self._send(self.market.functions.withdraw())

    def provider_info(self, provider: str) -> ProviderInfo:
        address = parse_address(provider)
        r = self._call(self.market.functions.providerInfo(address))
        return ProviderInfo(
            address=address,
            registered=r[0],
            group=r[1],
            stake=Wei(r[2]),
            locked=Wei(r[3]),
            free=Wei(r[4]),
            earned=Wei(r[5]),
            completed=r[6],
            slashed=r[7],
            unbonding=Wei(r[8]),
            unbond_ready_at=r[9],
        )

    def bond_coordinator(self, amount: int) -> Receipt:
        """Bond ``amount`` as a coordinator, with a permit signed here."""
        deadline, v, r, s = self._permit_for(amount)
        return self._send(self.market.functions.bondCoordinator(amount, deadline, v, r, s))

    def request_coordinator_unbond(self, amount: int) -> Receipt:
        return self._send(self.market.functions.requestCoordinatorUnbond(amount))

    def withdraw_coordinator_bond(self) -> Receipt:
        return self._send(self.market.functions.withdrawCoordinatorBond())

    def coordinator_info(self, coordinator: str) -> CoordinatorInfo:
        address = parse_address(coordinator)
        bond, unbonding, ready_at = self._call(self.market.functions.coordinatorInfo(address))
        return CoordinatorInfo(address, Wei(bond), Wei(unbonding), int(ready_at))

    # ------------------------------------------------------- market: requester
    def create_job(self, request: JobRequest) -> tuple[JobId, Receipt]:
        """Create a job with a permit for exactly its escrow; returns its id and receipt."""
        permit = self._permit_for(request.escrow)
        receipt = self._send(self.market.functions.createJob(job_params_tuple(request), permit))
        created = receipt.named("JobCreated")[0]
        self._remember(created)
        return JobId(created.args["jobId"]), receipt

    def cancel(self, job_id: JobId) -> Receipt:
        fn = self.market.functions.cancel(bytes(job_id), self._terms_tuple(job_id))
        return self._send(fn)

    def reclaim(self, job_id: JobId) -> Receipt:
        terms, seats = self._record(job_id)
        return self._send(self.market.functions.reclaim(bytes(job_id), terms, seats))

    def claim(self) -> Receipt:
        return self._send(self.market.functions.claim())

    # ----------------------------------------------------- market: coordinator
    def assign(self, job_id: JobId, offers: list[AcceptedSeat]) -> Receipt:
        terms, seats = self._record(job_id)
        fn = self.market.functions.assign(
            bytes(job_id), terms, seats, [o.as_tuple() for o in offers]
        )
        receipt = self._send(fn)
        known = self._seats.get(bytes(job_id), [])
        added = [seat_from_event(e) for e in receipt.named("ProviderAssigned")]
        if len(known) == len(seats):
            self._seats[bytes(job_id)] = known + [s for _, s in sorted(added, key=lambda a: a[0])]
        return receipt

    def settle(self, settlement: Settlement) -> Receipt:
        terms = self._terms_tuple(settlement.job_id)
        return self._send(self.market.functions.settle(settlement_tuple(settlement, terms)))

    def settle_batch(self, settlements: list[Settlement]) -> Receipt:
        """Settle many jobs in one transaction; the contract skips each invalid settlement
        with ``SettlementSkipped`` (an unknown job is sent with empty terms, and skipped)."""
        batch = []
        for s in settlements:
            try:
                terms = self._terms_tuple(s.job_id)
            except JobNotFound:
                terms = EMPTY_TERMS
            batch.append(settlement_tuple(s, terms))
        return self._send(self.market.functions.settleBatch(batch))

    def abort(self, job_id: JobId) -> Receipt:
        terms, seats = self._record(job_id)
        return self._send(self.market.functions.abort(bytes(job_id), terms, seats))

    # ------------------------------------------------------- market: providers
    def commit_on_chain(self, job_id: JobId, seat: int, commit_hash: bytes) -> Receipt:
        terms, seats = self._record(job_id)
        fn = self.market.functions.commitOnChain(bytes(job_id), terms, seats, seat, commit_hash)
        return self._send(fn)

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
        terms, seats = self._record(job_id)
        fn = self.market.functions.revealOnChain(
            bytes(job_id),
            terms,
            seats,
            seat,
            result,
            runtime_ms,
            salt,
            provider_signature,
            receipt_signature,
        )
        return self._send(fn)

    def finalize(self, job_id: JobId) -> Receipt:
        terms, seats = self._record(job_id)
        return self._send(self.market.functions.finalize(bytes(job_id), terms, seats))

    # ------------------------------------------------------------------- reads
    def on_chain_entry(self, job_id: JobId, seat: int) -> OnChainEntry:
        r = self._call(self.market.functions.onChainEntry(bytes(job_id), seat))
        return OnChainEntry(bytes(r[0]), bytes(r[1]), int(r[2]), bool(r[3]), bool(r[4]), bool(r[5]))

    def job_status(self, job_id: JobId) -> tuple[JobStatus, int]:
        """Status and seat count, from storage alone (one call)."""
        status, seats, _ = self._call(self.market.functions.getJob(bytes(job_id)))
        return JobStatus(status), int(seats)

    def job_terms(self, job_id: JobId) -> JobTerms:
        """The job's terms from its JobCreated event (cached: they never change)."""
        return self._created_of(job_id).terms

    def get_seats(self, job_id: JobId) -> list[Seat]:
        """The job's seats in order, from its ProviderAssigned events (cached)."""
        status, count = self.job_status(job_id)
        if status == JobStatus.NONE:
            raise JobNotFound(jobId=bytes(job_id))
        return self._seats_of(job_id, count)

    def get_job(self, job_id: JobId) -> JobInfo:
        status, count = self.job_status(job_id)
        if status == JobStatus.NONE:
            raise JobNotFound(jobId=bytes(job_id))
        created = self._created_of(job_id)
        return JobInfo(
            job_id=job_id,
            status=status,
            assigned=count,
            terms=created.terms,
            spec_digest=created.spec_digest,
            spec_cid=created.spec_cid,
            seats=tuple(self._seats_of(job_id, count)),
            created_block=created.block,
        )

    def account_info(self, account: str) -> AccountInfo:
        owed, lifetime, nonce = self._call(self.market.functions.accountOf(parse_address(account)))
        return AccountInfo(owed=Wei(owed), lifetime=Wei(lifetime), nonce=nonce)

    def claimable(self, account: str) -> Wei:
        """What ``claim`` would pay ``account`` now: market credits plus provider earnings."""
        return Wei(self.account_info(account).owed + self.provider_info(account).earned)

    def burned(self) -> Wei:
        return Wei(self._call(self.market.functions.burned()))

    # ---------------------------------------------------------------- helpers
    def _send(self, fn: Any) -> Receipt:
        return self._receipt(self.sender.send(fn))

    def _receipt(self, raw: TxReceipt) -> Receipt:
        return Receipt(
            tx_hash="0x" + bytes(raw["transactionHash"]).hex(),
            block_number=raw["blockNumber"],
            gas_used=raw["gasUsed"],
            events=tuple(self._decoded(raw["logs"])),
        )

    def _decoded(self, logs: Any) -> list[ChainEvent]:
        events = [e for e in (self.decoder.decode(log) for log in logs) if e is not None]
        return sorted(events, key=lambda e: (e.block_number, e.log_index))

    def _permit_token_name(self) -> str:
        """The token's name when its EIP-2612 domain is (name(), "1", chain, token), else ""."""
        if self._token_name is None:
            token = self.token.functions
            try:
                name = str(token.name().call())
                separator = bytes(token.DOMAIN_SEPARATOR().call())
            except Exception:
                name, separator = "", b""
            self._token_name = (
                name
                if separator
                == token_domain_separator(self._deployment.chain_id, self._deployment.token, name)
                else ""
            )
        return self._token_name

    def _sign_permit(self, name: str, spender: str, value: int, deadline: int) -> Signature:
        # The pending nonce: a permit signed behind an unmined one of ours would be stale.
        nonce = self._read(
            lambda: self.token.functions.nonces(self.address).call(block_identifier="pending")
        )
        return sign_permit(
            self._account,
            chain_id=self._deployment.chain_id,
            token=self._deployment.token,
            token_name=name,
            owner=self.address,
            spender=spender,
            value=value,
            nonce=nonce,
            deadline=deadline,
        )

    def _permit_for(self, amount: int) -> tuple[int, int, bytes, bytes]:
        """(deadline, v, r, s) of a permit letting the market take ``amount``; without
        working permits the allowance is approved first and deadline 0 is returned."""
        name = self._permit_token_name()
        if not name:
            self.approve(self._deployment.market, amount)
            return _NO_PERMIT
        deadline = self.next_block_time() + PERMIT_LIFETIME_S
        sig = self._sign_permit(name, self._deployment.market, amount, deadline)
        return deadline, sig.v, sig.r, sig.s

    def _terms_tuple(self, job_id: JobId) -> tuple[Any, ...]:
        return self.job_terms(job_id).as_tuple()

    def _record(self, job_id: JobId) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        """The job's terms and seats as the contract takes them back."""
        terms = self._terms_tuple(job_id)
        return terms, [s.as_tuple() for s in self.get_seats(job_id)]

    def _created_of(self, job_id: JobId) -> CreatedJob:
        found = self._created.get(bytes(job_id))
        if found is not None:
            return found
        logs = self._job_logs("JobCreated", job_id, 0)
        if not logs:
            raise JobNotFound(jobId=bytes(job_id))
        return self._remember(logs[0])

    def _remember(self, event: ChainEvent) -> CreatedJob:
        created = CreatedJob.from_event(event)
        self._created[created.job_id] = created
        return created

    def _seats_of(self, job_id: JobId, count: int) -> list[Seat]:
        known = self._seats.get(bytes(job_id), [])
        if len(known) >= count:
            return known[:count]
        logs = self._job_logs("ProviderAssigned", job_id, self._created_of(job_id).block)
        by_seat = dict(seat_from_event(e) for e in logs)
        missing = [i for i in range(count) if i not in by_seat]
        if missing:
            raise RpcError(
                f"the node returned no ProviderAssigned event for seats {missing} of job "
                f"0x{bytes(job_id).hex()}; retry when it has indexed the latest blocks"
            )
        seats = [by_seat[i] for i in range(count)]
        self._seats[bytes(job_id)] = seats
        return seats

    def _job_logs(self, name: str, job_id: JobId, from_block: int) -> list[ChainEvent]:
        """Market events ``name`` whose first indexed argument is ``job_id``."""
        topics = [self.decoder.topic(name), "0x" + bytes(job_id).hex()]
        logs = self._read(
            lambda: self.w3.eth.get_logs(
                {
                    "fromBlock": from_block,
                    "toBlock": "latest",
                    "address": _cs(self._deployment.market),
                    "topics": topics,
                }
            )
        )
        return self._decoded(logs)

    def _call(self, fn: Any) -> Any:
        return self._read(lambda: fn.call())

    @staticmethod
    def _read(thunk: Any) -> Any:
        try:
            return thunk()
        except Exception as exc:
            raise translate_error(exc) from exc


def _cs(address: str) -> ChecksumAddress:
    return ChecksumAddress(HexAddress(HexStr(parse_address(address))))
