"""Typed bindings over web3 for the token, registry and market, and the client Protocol.

A :class:`ChainClient` acts for one local account. :class:`Web3Chain` talks JSON-RPC;
``contracts.fake.FakeChain`` implements the same Protocol in memory for unit tests. Every
failure is a ``ChainError``; contract reverts arrive as the named classes of
``contracts.errors`` with their decoded arguments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from eth_abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexAddress, HexStr
from eth_utils import keccak
from web3 import Web3
from web3.types import TxReceipt

from contracts.abi import load_artifact
from contracts.deploy import connect
from contracts.eip712 import Signature, sign_permit
from contracts.errors import JobNotFound, ValueOutOfRange, translate_error
from contracts.events import EventDecoder
from contracts.models import (
    AccountInfo,
    Assignment,
    ChainEvent,
    CompareMode,
    Deployment,
    JobInfo,
    JobRequest,
    JobStatus,
    JobTerms,
    ProviderInfo,
    Receipt,
    Settlement,
)
from contracts.sender import TxSender
from protocol.ids import Address, JobId, Wei, parse_address

PERMIT_LIFETIME_S = 3600
TOKEN_NAME = "Test USD"


def job_id_for(requester: str, nonce: int) -> JobId:
    """keccak256(abi.encode(requester, nonce)), the id ``createJob`` gives a job."""
    return JobId(keccak(encode(["address", "uint256"], [parse_address(requester), nonce])))


def assignment_hash(assignment: list[Assignment] | tuple[Assignment, ...]) -> bytes:
    """The market's hash chain over the assignment in order:
    ``chain = keccak256(chain ‖ provider ‖ uint64 price)`` starting from 32 zero bytes."""
    chain = b"\0" * 32
    for a in assignment:
        packed = chain + bytes.fromhex(parse_address(a.provider)[2:]) + a.price.to_bytes(8, "big")
        chain = keccak(packed)
    return chain


def job_commitment(terms: JobTerms, assignment: list[Assignment] | tuple[Assignment, ...]) -> bytes:
    """What the market's job slot commits to: keccak256(abi.encode(terms, chain)) with its
    low byte (status and count live there) cleared."""
    encoded = encode(
        ["(address,address,uint8,uint8,uint64,uint64,uint32,uint32,uint32)", "bytes32"],
        [terms.as_tuple(), assignment_hash(assignment)],
    )
    return keccak(encoded)[:31] + b"\0"


@runtime_checkable
class ChainClient(Protocol):
    """What every component needs from the chain, acting as ``address``."""

    @property
    def address(self) -> Address: ...
    @property
    def deployment(self) -> Deployment: ...

    # chain
    def block_number(self) -> int: ...
    def now(self) -> int:
        """Timestamp of the latest block (deadlines are compared against block time)."""
        ...

    def get_events(self, from_block: int, to_block: int) -> list[ChainEvent]:
        """Decoded logs of the three contracts in [from_block, to_block], in chain order."""
        ...

    # token
    def token_balance(self, owner: str) -> Wei: ...
    def mint(self, to: str, amount: int) -> Receipt: ...
    def approve(self, spender: str, amount: int) -> Receipt: ...
    def sign_permit(self, spender: str, value: int, deadline: int) -> Signature: ...

    # registry
    def register(self, group: int = 0) -> Receipt: ...
    def stake(self, amount: int) -> Receipt: ...
    def request_unbond(self, amount: int) -> Receipt: ...
    def withdraw(self) -> Receipt: ...
    def provider_info(self, provider: str) -> ProviderInfo: ...

    # market
    def create_job(self, request: JobRequest) -> tuple[JobId, Receipt]: ...
    def assign(self, job_id: JobId, assignment: list[Assignment]) -> Receipt: ...
    def settle(self, settlement: Settlement) -> Receipt: ...
    def settle_batch(self, settlements: list[Settlement]) -> Receipt: ...
    def reclaim(self, job_id: JobId, assignment: list[Assignment]) -> Receipt: ...
    def cancel(self, job_id: JobId) -> Receipt: ...
    def claim(self) -> Receipt: ...
    def commit_on_chain(self, job_id: JobId, commit_hash: bytes) -> Receipt:
        """The calling provider commits on chain itself (before the commit deadline)."""
        ...

    def reveal_on_chain(self, job_id: JobId, result: bytes, salt: bytes) -> Receipt:
        """The calling provider reveals its on-chain commitment (before the settle deadline)."""
        ...

    def finalize(self, job_id: JobId) -> Receipt:
        """Anyone, after the settle deadline: pay a job whose on-chain reveals agree."""
        ...

    def on_chain_entry(self, job_id: JobId, index: int) -> tuple[bytes, bytes, bool]:
        """(commit hash, result, revealed) a provider put on chain for assignment ``index``."""
        ...

    def get_job(self, job_id: JobId) -> JobInfo:
        """Raises JobNotFound for an unknown id."""
        ...

    def job_status(self, job_id: JobId) -> tuple[JobStatus, int]: ...
    def job_terms(self, job_id: JobId) -> JobTerms: ...
    def claimable(self, account: str) -> Wei: ...
    def get_assignment(self, job_id: JobId) -> list[Assignment]:
        """The job's assignment in order, from its ProviderAssigned events."""
        ...

    def account_info(self, account: str) -> AccountInfo: ...


class Web3Chain:
    """:class:`ChainClient` over JSON-RPC, signing locally with ``account``."""

    def __init__(
        self,
        rpc_url: str,
        deployment: Deployment,
        account: LocalAccount | str,
        *,
        w3: Web3 | None = None,
    ) -> None:
        self.rpc_url = rpc_url
        self.w3 = w3 if w3 is not None else connect(rpc_url)
        self._account = account if isinstance(account, LocalAccount) else Account.from_key(account)
        self._deployment = deployment
        self.sender = TxSender(self.w3, self._account, deployment.chain_id)
        eth = self.w3.eth
        self.token = eth.contract(address=_cs(deployment.token), abi=load_artifact("TestUSD").abi)
        # The registry is the provider half of the market contract: same ABI.
        self.registry = eth.contract(
            address=_cs(deployment.registry), abi=load_artifact("JobMarket").abi
        )
        self.market = eth.contract(
            address=_cs(deployment.market), abi=load_artifact("JobMarket").abi
        )
        self.decoder = EventDecoder(deployment)
        self._created_cache: dict[bytes, _Created] = {}

    def for_account(self, account: LocalAccount | str) -> Web3Chain:
        """Another client on the same connection acting for ``account``."""
        return Web3Chain(self.rpc_url, self._deployment, account, w3=self.w3)

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

    def get_events(self, from_block: int, to_block: int) -> list[ChainEvent]:
        d = self._deployment
        logs = self._read(
            lambda: self.w3.eth.get_logs(
                {
                    "fromBlock": from_block,
                    "toBlock": to_block,
                    "address": [_cs(a) for a in {d.token, d.registry, d.market}],
                }
            )
        )
        events = [e for e in (self.decoder.decode(log) for log in logs) if e is not None]
        return sorted(events, key=lambda e: (e.block_number, e.log_index))

    # ------------------------------------------------------------------ token
    def token_balance(self, owner: str) -> Wei:
        return Wei(self._call(self.token.functions.balanceOf(parse_address(owner))))

    def mint(self, to: str, amount: int) -> Receipt:
        return self._send(self.token.functions.mint(parse_address(to), amount))

    def approve(self, spender: str, amount: int) -> Receipt:
        return self._send(self.token.functions.approve(parse_address(spender), amount))

    def sign_permit(self, spender: str, value: int, deadline: int) -> Signature:
        nonce = self._call(self.token.functions.nonces(self.address))
        return sign_permit(
            self._account,
            chain_id=self._deployment.chain_id,
            token=self._deployment.token,
            token_name=TOKEN_NAME,
            spender=spender,
            value=value,
            nonce=nonce,
            deadline=deadline,
        )

    # --------------------------------------------------------------- registry
    def register(self, group: int = 0) -> Receipt:
        return self._send(self.registry.functions.register(group))

    def stake(self, amount: int) -> Receipt:
        """Bond ``amount`` with a permit signed here: one transaction."""
        deadline = self.now() + PERMIT_LIFETIME_S
        sig = self.sign_permit(self._deployment.registry, amount, deadline)
        fn = self.registry.functions.stakeWithPermit(amount, deadline, sig.v, sig.r, sig.s)
        return self._send(fn)

    def request_unbond(self, amount: int) -> Receipt:
        return self._send(self.registry.functions.requestUnbond(amount))

    def withdraw(self) -> Receipt:
        return self._send(self.registry.functions.withdraw())

    def provider_info(self, provider: str) -> ProviderInfo:
        address = parse_address(provider)
        r = self._call(self.registry.functions.providerInfo(address))
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

    # ----------------------------------------------------------------- market
    def create_job(self, request: JobRequest) -> tuple[JobId, Receipt]:
        """Create a job with a permit for exactly its escrow; returns its id and receipt."""
        deadline = self.now() + PERMIT_LIFETIME_S
        sig = self.sign_permit(self._deployment.market, request.escrow, deadline)
        fn = self.market.functions.createJob(
            _params_tuple(request), (deadline, sig.v, sig.r, sig.s)
        )
        receipt = self._send(fn)
        created = receipt.named("JobCreated")
        job_id = JobId(created[0].args["jobId"])
        self._remember(created[0])
        return job_id, receipt

    def assign(self, job_id: JobId, assignment: list[Assignment]) -> Receipt:
        terms = self.job_terms(job_id).as_tuple()
        providers, prices = _split(assignment)
        return self._send(self.market.functions.assign(bytes(job_id), terms, providers, prices))

    def settle(self, settlement: Settlement) -> Receipt:
        return self._send(self.market.functions.settle(self._settlement_tuple(settlement)))

    def settle_batch(self, settlements: list[Settlement]) -> Receipt:
        batch = [self._settlement_tuple(s) for s in settlements]
        return self._send(self.market.functions.settleBatch(batch))

    def reclaim(self, job_id: JobId, assignment: list[Assignment]) -> Receipt:
        terms = self.job_terms(job_id).as_tuple()
        providers, prices = _split(assignment)
        fn = self.market.functions.reclaim(bytes(job_id), terms, providers, prices)
        return self._send(fn)

    def cancel(self, job_id: JobId) -> Receipt:
        terms = self.job_terms(job_id).as_tuple()
        return self._send(self.market.functions.cancel(bytes(job_id), terms))

    def claim(self) -> Receipt:
        return self._send(self.market.functions.claim())

    def commit_on_chain(self, job_id: JobId, commit_hash: bytes) -> Receipt:
        terms, providers, prices, index = self._own_entry(job_id)
        fn = self.market.functions.commitOnChain(
            bytes(job_id), terms, providers, prices, index, commit_hash
        )
        return self._send(fn)

    def reveal_on_chain(self, job_id: JobId, result: bytes, salt: bytes) -> Receipt:
        terms, providers, prices, index = self._own_entry(job_id)
        fn = self.market.functions.revealOnChain(
            bytes(job_id), terms, providers, prices, index, result, salt
        )
        return self._send(fn)

    def finalize(self, job_id: JobId) -> Receipt:
        terms = self.job_terms(job_id).as_tuple()
        providers, prices = _split(self.get_assignment(job_id))
        fn = self.market.functions.finalize(bytes(job_id), terms, providers, prices)
        return self._send(fn)

    def on_chain_entry(self, job_id: JobId, index: int) -> tuple[bytes, bytes, bool]:
        commit, result, revealed = self._call(
            self.market.functions.onChainEntry(bytes(job_id), index)
        )
        return bytes(commit), bytes(result), bool(revealed)

    def job_status(self, job_id: JobId) -> tuple[JobStatus, int]:
        """Status and number of assigned providers, from storage alone (one call)."""
        status, assigned, _ = self._call(self.market.functions.getJob(bytes(job_id)))
        return JobStatus(status), int(assigned)

    def job_terms(self, job_id: JobId) -> JobTerms:
        """The job's terms from its JobCreated event (cached: they never change)."""
        return self._created(job_id).terms

    def get_job(self, job_id: JobId) -> JobInfo:
        status, assigned = self.job_status(job_id)
        if status == JobStatus.NONE:
            raise JobNotFound(jobId=bytes(job_id))
        created = self._created(job_id)
        return JobInfo(
            job_id=job_id,
            status=status,
            assigned=assigned,
            terms=created.terms,
            spec_digest=created.spec_digest,
            spec_cid=created.spec_cid,
            assignment=tuple(self._assignment(job_id, created.block, assigned)),
            created_block=created.block,
        )

    def get_assignment(self, job_id: JobId) -> list[Assignment]:
        _, assigned = self.job_status(job_id)
        return self._assignment(job_id, self._created(job_id).block, assigned)

    def account_info(self, account: str) -> AccountInfo:
        owed, lifetime, nonce = self._call(self.market.functions.accountOf(parse_address(account)))
        return AccountInfo(owed=Wei(owed), lifetime=Wei(lifetime), nonce=nonce)

    def claimable(self, account: str) -> Wei:
        """What ``claim`` would pay ``account`` now: market credits plus provider earnings."""
        return Wei(self.account_info(account).owed + self.provider_info(account).earned)

    # ---------------------------------------------------------------- helpers
    def _send(self, fn: Any) -> Receipt:
        raw = self.sender.send(fn)
        return self._receipt(raw)

    def _receipt(self, raw: TxReceipt) -> Receipt:
        events = tuple(e for e in (self.decoder.decode(log) for log in raw["logs"]) if e)
        return Receipt(
            tx_hash="0x" + bytes(raw["transactionHash"]).hex(),
            block_number=raw["blockNumber"],
            gas_used=raw["gasUsed"],
            events=events,
        )

    def _settlement_tuple(self, s: Settlement) -> tuple[Any, ...]:
        if len(s.entries) != len(s.assignment):
            raise ValueOutOfRange("a settlement needs one entry per assigned provider")
        providers, prices = _split(list(s.assignment))
        entries = []
        for e in s.entries:
            sig = e.signature
            v, r, ss = (sig.v, sig.r, sig.s) if sig is not None else (0, b"\0" * 32, b"\0" * 32)
            entries.append((int(e.kind), e.value, e.salt, v, r, ss))
        terms = self.job_terms(s.job_id).as_tuple()
        return (bytes(s.job_id), terms, providers, prices, entries, s.winners)

    def _own_entry(self, job_id: JobId) -> tuple[tuple[Any, ...], list[Address], list[int], int]:
        """Terms, assignment and this account's index in it (NotAssignedProvider if absent:
        index 0 is sent so the contract itself refuses)."""
        terms = self.job_terms(job_id).as_tuple()
        providers, prices = _split(self.get_assignment(job_id))
        index = providers.index(self.address) if self.address in providers else 0
        return terms, providers, prices, index

    def _created(self, job_id: JobId) -> _Created:
        found = self._created_cache.get(bytes(job_id))
        if found is not None:
            return found
        logs = self._job_logs("JobCreated", job_id, 0)
        if not logs:
            raise JobNotFound(jobId=bytes(job_id))
        return self._remember(logs[0])

    def _remember(self, event: ChainEvent) -> _Created:
        created = _Created.from_event(event)
        self._created_cache[bytes(event.args["jobId"])] = created
        return created

    def _assignment(self, job_id: JobId, from_block: int, assigned: int) -> list[Assignment]:
        logs = self._job_logs("ProviderAssigned", job_id, from_block)
        by_index = {int(e.args["index"]): e.args for e in logs}
        return [
            Assignment(parse_address(by_index[i]["provider"]), Wei(by_index[i]["price"]))
            for i in range(assigned)
            if i in by_index
        ]

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
        events = [e for e in (self.decoder.decode(log) for log in logs) if e is not None]
        return sorted(events, key=lambda e: (e.block_number, e.log_index))

    def _call(self, fn: Any) -> Any:
        return self._read(lambda: fn.call())

    @staticmethod
    def _read(thunk: Any) -> Any:
        try:
            return thunk()
        except Exception as exc:
            raise translate_error(exc) from exc


def _split(assignment: list[Assignment]) -> tuple[list[Address], list[int]]:
    return [parse_address(a.provider) for a in assignment], [int(a.price) for a in assignment]


def _cs(address: str) -> ChecksumAddress:
    return ChecksumAddress(HexAddress(HexStr(parse_address(address))))


def _params_tuple(r: JobRequest) -> tuple[Any, ...]:
    return (
        r.spec_digest,
        r.spec_cid.encode(),
        parse_address(r.coordinator),
        r.redundancy,
        int(r.mode),
        r.price_cap,
        r.fee,
        r.assign_deadline,
        r.commit_deadline,
        r.settle_deadline,
    )


@dataclass(frozen=True)
class _Created:
    terms: JobTerms
    spec_digest: bytes
    spec_cid: str
    block: int

    @classmethod
    def from_event(cls, e: ChainEvent) -> _Created:
        a = e.args
        terms = JobTerms(
            requester=parse_address(a["requester"]),
            coordinator=parse_address(a["coordinator"]),
            redundancy=a["redundancy"],
            mode=CompareMode(a["mode"]),
            price_cap=Wei(a["priceCap"]),
            fee=Wei(a["fee"]),
            assign_deadline=a["assignDeadline"],
            commit_deadline=a["commitDeadline"],
            settle_deadline=a["settleDeadline"],
        )
        cid = bytes(a["specCid"]).decode("utf-8", errors="replace")
        return cls(terms, bytes(a["specDigest"]), cid, e.block_number)


def wait_for_block(client: ChainClient, number: int, timeout_s: float = 30.0) -> None:
    """Poll until the chain reaches block ``number`` (for watchers in tests)."""
    stop = time.monotonic() + timeout_s
    while client.block_number() < number:
        if time.monotonic() > stop:
            raise translate_error(TimeoutError(f"block {number} not reached in {timeout_s}s"))
        time.sleep(0.05)
