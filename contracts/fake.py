"""An in-memory chain that follows the contracts' rules, for unit tests.

``FakeWorld`` holds the state of the token and the market (balances, providers, jobs,
credits, block time and an event log); ``world.client(key)`` returns a :class:`FakeChain`
acting for one account, implementing :class:`contracts.chain.ChainClient`. Every revert
raises the same ``contracts.errors`` class, with the same fields, as the real contract.
Signatures in settlements are checked with the real EIP-712 code. Each write mines one
block and advances time by one second; ``world.advance(seconds)`` moves time on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from contracts import errors as E
from contracts.chain import assignment_hash, job_id_for
from contracts.eip712 import Signature, recover_commit, recover_reveal, sign_permit
from contracts.models import (
    MAX_BATCH,
    MAX_JOB_DURATION_S,
    MAX_REDUNDANCY,
    MAX_SPEC_CID_LENGTH,
    AccountInfo,
    Assignment,
    ChainEvent,
    CompareMode,
    Deployment,
    EntryKind,
    JobInfo,
    JobRequest,
    JobStatus,
    JobTerms,
    ProviderInfo,
    Receipt,
    Settlement,
)
from protocol.errors import SignatureError
from protocol.ids import Address, JobId, Wei, parse_address

FAKE_TOKEN = parse_address("0x00000000000000000000000000000000000070c3")
FAKE_MARKET = parse_address("0x000000000000000000000000000000000000fa4e")
HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
UINT56_MAX = 2**56 - 1


@dataclass
class _Provider:
    registered: bool = False
    group: int = 0
    stake: int = 0
    locked: int = 0
    earned: int = 0
    completed: int = 0
    slashed: int = 0
    unbonding: int = 0
    ready_at: int = 0


@dataclass
class _Job:
    terms: JobTerms
    spec_digest: bytes
    spec_cid: str
    created_block: int
    status: JobStatus = JobStatus.OPEN
    assignment: list[Assignment] = field(default_factory=list)


@dataclass
class _Account:
    owed: int = 0
    lifetime: int = 0
    nonce: int = 0


class FakeWorld:
    """The shared state behind every :class:`FakeChain` of one test."""

    def __init__(
        self,
        *,
        chain_id: int = 31337,
        min_stake: int = 50_000_000,
        unbonding_delay: int = 24 * 3600,
        stake_factor: int = 5,
        start_time: int = 1_700_000_000,
        minter: str | None = None,
    ) -> None:
        self.deployment = Deployment(chain_id, FAKE_TOKEN, FAKE_MARKET, FAKE_MARKET)
        self.min_stake = min_stake
        self.unbonding_delay = unbonding_delay
        self.stake_factor = stake_factor
        self.time = start_time
        self.block = 1
        self.minter = parse_address(minter) if minter else None
        self.balances: dict[Address, int] = {}
        self.allowances: dict[tuple[Address, Address], int] = {}
        self.providers: dict[Address, _Provider] = {}
        self.accounts: dict[Address, _Account] = {}
        self.jobs: dict[bytes, _Job] = {}
        # (job id, assignment index) -> [commit hash, result, revealed]
        self.on_chain: dict[tuple[bytes, int], list[Any]] = {}
        self.events: list[ChainEvent] = []
        self._log_index = 0

    def client(self, account: LocalAccount | str) -> FakeChain:
        """A client acting for ``account`` (a LocalAccount, a private key or an address;
        with an address only, nothing can be signed)."""
        return FakeChain(self, account)

    def advance(self, seconds: int) -> None:
        self.time += seconds

    def balance(self, who: str) -> int:
        return self.balances.get(parse_address(who), 0)

    # bookkeeping ---------------------------------------------------------
    def _mine(self) -> int:
        self.block += 1
        self.time += 1
        self._log_index = 0
        return self.block

    def _emit(self, contract: str, name: str, tx: str, **args: Any) -> ChainEvent:
        event = ChainEvent(name, contract, args, self.block, tx, self._log_index)
        self._log_index += 1
        self.events.append(event)
        return event

    def _provider(self, who: Address) -> _Provider:
        return self.providers.setdefault(who, _Provider())

    def _account(self, who: Address) -> _Account:
        return self.accounts.setdefault(who, _Account())

    def _credit(self, who: Address, amount: int) -> None:
        if amount:
            acct = self._account(who)
            acct.owed += amount
            acct.lifetime += amount

    def _move(self, src: Address, dst: Address, amount: int) -> None:
        have = self.balances.get(src, 0)
        if have < amount:
            raise E.InsufficientBalance(account=src, balance=have, needed=amount)
        self.balances[src] = have - amount
        self.balances[dst] = self.balances.get(dst, 0) + amount

    def _pull(self, owner: Address, amount: int) -> None:
        """transferFrom(owner -> market) using the owner's allowance to the market."""
        allowed = self.allowances.get((owner, FAKE_MARKET), 0)
        if allowed < amount:
            raise E.InsufficientAllowance(spender=FAKE_MARKET, allowance=allowed, needed=amount)
        have = self.balances.get(owner, 0)
        if have < amount:
            raise E.InsufficientBalance(account=owner, balance=have, needed=amount)
        self.allowances[(owner, FAKE_MARKET)] = allowed - amount
        self._move(owner, FAKE_MARKET, amount)


class FakeChain:
    """:class:`contracts.chain.ChainClient` over a :class:`FakeWorld`."""

    def __init__(self, world: FakeWorld, account: LocalAccount | str) -> None:
        self.world = world
        self._signer: LocalAccount | None
        if isinstance(account, LocalAccount):
            self._signer = account
        elif isinstance(account, str) and len(account.removeprefix("0x")) == 64:
            self._signer = Account.from_key(account)
        else:
            self._signer = None
        self._address = parse_address(self._signer.address if self._signer else str(account))
        self._tx = 0

    def for_account(self, account: LocalAccount | str) -> FakeChain:
        return FakeChain(self.world, account)

    @property
    def address(self) -> Address:
        return self._address

    @property
    def deployment(self) -> Deployment:
        return self.world.deployment

    # chain -------------------------------------------------------------------
    def block_number(self) -> int:
        return self.world.block

    def now(self) -> int:
        return self.world.time

    def get_events(self, from_block: int, to_block: int) -> list[ChainEvent]:
        return [e for e in self.world.events if from_block <= e.block_number <= to_block]

    # token -------------------------------------------------------------------
    def token_balance(self, owner: str) -> Wei:
        return Wei(self.world.balance(owner))

    def mint(self, to: str, amount: int) -> Receipt:
        w = self.world
        if w.minter is not None and self._address != w.minter:
            raise E.NotMinter(caller=self._address)
        dst = parse_address(to)
        tx = self._begin()
        w.balances[dst] = w.balances.get(dst, 0) + amount
        w._emit("token", "Transfer", tx, **{"from": _ZERO, "to": dst, "value": amount})
        return self._receipt(tx)

    def approve(self, spender: str, amount: int) -> Receipt:
        tx = self._begin()
        self.world.allowances[(self._address, parse_address(spender))] = amount
        return self._receipt(tx)

    def sign_permit(self, spender: str, value: int, deadline: int) -> Signature:
        if self._signer is None:
            raise E.ChainError("this fake client has no key to sign with")
        return sign_permit(
            self._signer,
            chain_id=self.world.deployment.chain_id,
            token=FAKE_TOKEN,
            token_name="Test USD",
            spender=spender,
            value=value,
            nonce=0,
            deadline=deadline,
        )

    # registry ----------------------------------------------------------------
    def register(self, group: int = 0) -> Receipt:
        p = self.world._provider(self._address)
        if p.registered:
            raise E.AlreadyRegistered(provider=self._address)
        tx = self._begin()
        p.registered, p.group = True, group
        self.world._emit("market", "ProviderRegistered", tx, provider=self._address, group=group)
        return self._receipt(tx)

    def stake(self, amount: int) -> Receipt:
        w = self.world
        if amount == 0:
            raise E.ZeroAmount()
        p = w._provider(self._address)
        if not p.registered:
            raise E.ProviderNotRegistered(provider=self._address)
        if p.stake + amount > UINT56_MAX:
            raise E.StakeOverflow(stake=p.stake + amount)
        w.allowances[(self._address, FAKE_MARKET)] = amount  # the permit stake() signs
        w._pull(self._address, amount)
        tx = self._begin()
        p.stake += amount
        w._emit("market", "Staked", tx, provider=self._address, amount=amount, stake=p.stake)
        return self._receipt(tx)

    def request_unbond(self, amount: int) -> Receipt:
        w = self.world
        if amount == 0:
            raise E.ZeroAmount()
        p = w._provider(self._address)
        free = p.stake - p.locked
        if amount > free:
            raise E.InsufficientFreeStake(provider=self._address, free=free, needed=amount)
        tx = self._begin()
        p.stake -= amount
        p.unbonding += amount
        p.ready_at = w.time + w.unbonding_delay
        w._emit(
            "market",
            "UnbondRequested",
            tx,
            provider=self._address,
            amount=amount,
            unbonding=p.unbonding,
            readyAt=p.ready_at,
        )
        return self._receipt(tx)

    def withdraw(self) -> Receipt:
        w = self.world
        p = w._provider(self._address)
        if p.unbonding == 0:
            raise E.NothingToWithdraw(provider=self._address)
        if w.time + 1 < p.ready_at:  # the withdrawal is mined one second from now
            raise E.UnbondingNotReady(provider=self._address, readyAt=p.ready_at)
        tx = self._begin()
        amount, p.unbonding, p.ready_at = p.unbonding, 0, 0
        w._move(FAKE_MARKET, self._address, amount)
        w._emit("market", "Withdrawn", tx, provider=self._address, amount=amount)
        return self._receipt(tx)

    def provider_info(self, provider: str) -> ProviderInfo:
        who = parse_address(provider)
        p = self.world.providers.get(who, _Provider())
        return ProviderInfo(
            address=who,
            registered=p.registered,
            group=p.group,
            stake=Wei(p.stake),
            locked=Wei(p.locked),
            free=Wei(p.stake - p.locked),
            earned=Wei(p.earned),
            completed=p.completed,
            slashed=p.slashed,
            unbonding=Wei(p.unbonding),
            unbond_ready_at=p.ready_at,
        )

    # market ------------------------------------------------------------------
    def create_job(self, request: JobRequest) -> tuple[JobId, Receipt]:
        w = self.world
        _check_request(request, w.time + 1, w.stake_factor)
        escrow = request.escrow
        w.allowances[(self._address, FAKE_MARKET)] = escrow  # the permit create_job signs
        acct = w._account(self._address)
        job_id = job_id_for(self._address, acct.nonce)
        w._pull(self._address, escrow)
        tx = self._begin()
        acct.nonce += 1
        terms = JobTerms(
            requester=self._address,
            coordinator=parse_address(request.coordinator),
            redundancy=request.redundancy,
            mode=CompareMode(request.mode),
            price_cap=request.price_cap,
            fee=request.fee,
            assign_deadline=request.assign_deadline,
            commit_deadline=request.commit_deadline,
            settle_deadline=request.settle_deadline,
        )
        w.jobs[bytes(job_id)] = _Job(terms, request.spec_digest, request.spec_cid, w.block)
        w._emit(
            "market",
            "JobCreated",
            tx,
            jobId=bytes(job_id),
            requester=self._address,
            coordinator=terms.coordinator,
            specDigest=request.spec_digest,
            specCid=request.spec_cid.encode(),
            redundancy=terms.redundancy,
            mode=int(terms.mode),
            priceCap=terms.price_cap,
            fee=terms.fee,
            assignDeadline=terms.assign_deadline,
            commitDeadline=terms.commit_deadline,
            settleDeadline=terms.settle_deadline,
            escrow=escrow,
        )
        return job_id, self._receipt(tx)

    def assign(self, job_id: JobId, assignment: list[Assignment]) -> Receipt:
        w = self.world
        job = self._job(job_id, JobStatus.OPEN, JobStatus.ASSIGNED)
        t = job.terms
        n, already = len(assignment), len(job.assignment)
        if n <= already:
            raise E.NothingToAssign(jobId=bytes(job_id))
        if assignment_hash(assignment[:already]) != assignment_hash(job.assignment):
            raise E.RecordMismatch(jobId=bytes(job_id))
        if self._address != t.coordinator:
            raise E.NotCoordinator(jobId=bytes(job_id), caller=self._address)
        if w.time + 1 > t.assign_deadline:
            raise E.AssignDeadlinePassed(jobId=bytes(job_id), deadline=t.assign_deadline)
        if n > t.redundancy + 1:
            raise E.TooManyProviders(count=n, max=t.redundancy + 1)
        for a in assignment[already:]:
            if a.price > t.price_cap:
                raise E.PriceAboveCap(price=a.price, priceCap=t.price_cap)
        _check_lock(w, assignment, already)
        tx = self._begin()
        for i, a in enumerate(assignment[already:], start=already):
            w.providers[parse_address(a.provider)].locked += a.price * w.stake_factor
            w._emit(
                "market",
                "ProviderAssigned",
                tx,
                jobId=bytes(job_id),
                provider=parse_address(a.provider),
                price=a.price,
                index=i,
            )
        job.assignment = [Assignment(parse_address(a.provider), a.price) for a in assignment]
        job.status = JobStatus.ASSIGNED
        return self._receipt(tx)

    def settle(self, settlement: Settlement) -> Receipt:
        return self.settle_batch([settlement])

    def settle_batch(self, settlements: list[Settlement]) -> Receipt:
        if len(settlements) > MAX_BATCH:
            raise E.BatchTooLarge(size=len(settlements), max=MAX_BATCH)
        # all-or-nothing, as on chain: decide every outcome before changing anything
        outcomes = []
        seen: set[bytes] = set()
        for s in settlements:
            if bytes(s.job_id) in seen:  # settled earlier in this batch
                raise E.WrongStatus(jobId=bytes(s.job_id), status=int(JobStatus.SETTLED))
            seen.add(bytes(s.job_id))
            outcomes.append(self._decide(s))
        tx = self._begin()
        for s, (winners, slashes, result) in zip(settlements, outcomes, strict=True):
            self._pay(s.job_id, winners, slashes, result, True, tx)
        return self._receipt(tx)

    def _pay(
        self, job_id: JobId, winners: int, slashes: int, result: bytes, fee_paid: bool, tx: str
    ) -> None:
        w = self.world
        job = w.jobs[bytes(job_id)]
        t = job.terms
        job.status = JobStatus.SETTLED
        paid = slashed = 0
        for i, a in enumerate(job.assignment):
            p = w.providers[a.provider]
            lock = a.price * w.stake_factor
            p.locked -= lock
            if winners >> i & 1:
                paid += a.price
                p.earned += a.price
                p.completed += 1
            elif slashes >> i & 1:
                slashed += lock
                p.stake -= lock
                p.slashed += 1
                w._emit(
                    "market",
                    "ProviderSlashed",
                    tx,
                    jobId=bytes(job_id),
                    provider=a.provider,
                    amount=lock,
                )
        fee = t.fee if fee_paid else 0
        w._credit(t.coordinator, fee)
        refund = t.escrow - paid - fee + slashed
        w._credit(t.requester, refund)
        w._emit(
            "market",
            "JobSettled",
            tx,
            jobId=bytes(job_id),
            result=result,
            winners=winners,
            slashed=slashes,
            refund=refund,
        )

    def reclaim(self, job_id: JobId, assignment: list[Assignment]) -> Receipt:
        w = self.world
        job = self._job(job_id, JobStatus.OPEN, JobStatus.ASSIGNED)
        t = job.terms
        if len(assignment) != len(job.assignment):
            raise E.LengthMismatch()
        if assignment_hash(assignment) != assignment_hash(job.assignment):
            raise E.RecordMismatch(jobId=bytes(job_id))
        if self._address != t.requester:
            raise E.NotRequester(jobId=bytes(job_id), caller=self._address)
        deadline = t.assign_deadline if job.status == JobStatus.OPEN else t.settle_deadline
        if w.time + 1 <= deadline:
            raise E.ReclaimTooEarly(jobId=bytes(job_id), deadline=deadline)
        if job.assignment:
            values, revealed, _ = self._on_chain_outcome(job_id, len(job.assignment))
            best = _majority(values, revealed)
            if _bits(best) * 2 > max(_bits(revealed), t.redundancy):
                raise E.MajorityExists(jobId=bytes(job_id))
        tx = self._begin()
        job.status = JobStatus.RECLAIMED
        for a in job.assignment:
            w.providers[a.provider].locked -= a.price * w.stake_factor
        w._credit(t.requester, t.escrow)
        w._emit("market", "JobReclaimed", tx, jobId=bytes(job_id), refund=t.escrow)
        return self._receipt(tx)

    def cancel(self, job_id: JobId) -> Receipt:
        w = self.world
        job = self._job(job_id, JobStatus.OPEN, JobStatus.OPEN)
        if self._address != job.terms.requester:
            raise E.NotRequester(jobId=bytes(job_id), caller=self._address)
        tx = self._begin()
        job.status = JobStatus.CANCELLED
        w._credit(job.terms.requester, job.terms.escrow)
        w._emit("market", "JobCancelled", tx, jobId=bytes(job_id), refund=job.terms.escrow)
        return self._receipt(tx)

    def claim(self) -> Receipt:
        w = self.world
        acct = w._account(self._address)
        p = w._provider(self._address)
        amount = acct.owed + p.earned
        if amount == 0:
            raise E.NothingToClaim(account=self._address)
        tx = self._begin()
        acct.owed = p.earned = 0
        w._move(FAKE_MARKET, self._address, amount)
        w._emit("market", "Claimed", tx, account=self._address, amount=amount)
        return self._receipt(tx)

    def commit_on_chain(self, job_id: JobId, commit_hash: bytes) -> Receipt:
        job, index = self._own_entry(job_id)
        if self.world.time + 1 > job.terms.commit_deadline:
            raise E.CommitDeadlinePassed(jobId=bytes(job_id), deadline=job.terms.commit_deadline)
        key = (bytes(job_id), index)
        if key in self.world.on_chain:
            raise E.AlreadyCommitted(jobId=bytes(job_id), provider=self._address)
        tx = self._begin()
        self.world.on_chain[key] = [commit_hash, b"\0" * 32, False]
        self.world._emit(
            "market",
            "ProviderCommitted",
            tx,
            jobId=bytes(job_id),
            provider=self._address,
            commitHash=commit_hash,
        )
        return self._receipt(tx)

    def reveal_on_chain(self, job_id: JobId, result: bytes, salt: bytes) -> Receipt:
        job, index = self._own_entry(job_id)
        jid = bytes(job_id)
        if self.world.time + 1 > job.terms.settle_deadline:
            raise E.SettleDeadlinePassed(jobId=jid, deadline=job.terms.settle_deadline)
        entry = self.world.on_chain.get((jid, index))
        if entry is None:
            raise E.NotCommitted(jobId=jid, provider=self._address)
        if entry[2]:
            raise E.AlreadyRevealed(jobId=jid, provider=self._address)
        if keccak(result + salt) != entry[0]:
            raise E.RevealMismatch(jobId=jid, provider=self._address)
        tx = self._begin()
        entry[1], entry[2] = result, True
        self.world._emit(
            "market",
            "ProviderRevealed",
            tx,
            jobId=jid,
            provider=self._address,
            result=result,
            salt=salt,
        )
        return self._receipt(tx)

    def finalize(self, job_id: JobId) -> Receipt:
        job = self._job(job_id, JobStatus.ASSIGNED)
        t = job.terms
        jid = bytes(job_id)
        if self.world.time + 1 <= t.settle_deadline:
            raise E.FinalizeTooEarly(jobId=jid, deadline=t.settle_deadline)
        values, revealed, committed_only = self._on_chain_outcome(job_id, len(job.assignment))
        winners = _majority(values, revealed)
        if _bits(winners) * 2 <= max(_bits(revealed | committed_only), t.redundancy):
            raise E.NoMajority(jobId=jid)
        slashes = (revealed | committed_only) & ~winners if t.mode == CompareMode.EXACT else 0
        first = (winners & -winners).bit_length() - 1
        tx = self._begin()
        self._pay(job_id, winners, slashes, values[first], False, tx)
        self.world._emit("market", "JobFinalized", tx, jobId=jid, caller=self._address)
        return self._receipt(tx)

    def on_chain_entry(self, job_id: JobId, index: int) -> tuple[bytes, bytes, bool]:
        entry = self.world.on_chain.get((bytes(job_id), index))
        if entry is None:
            return b"\0" * 32, b"\0" * 32, False
        return entry[0], entry[1], entry[2]

    def _own_entry(self, job_id: JobId) -> tuple[_Job, int]:
        job = self._job(job_id, JobStatus.ASSIGNED)
        for i, a in enumerate(job.assignment):
            if a.provider == self._address:
                return job, i
        raise E.NotAssignedProvider(jobId=bytes(job_id), caller=self._address)

    def _on_chain_outcome(self, job_id: JobId, n: int) -> tuple[list[bytes], int, int]:
        values = [b"\0" * 32] * n
        revealed = committed_only = 0
        for i in range(n):
            entry = self.world.on_chain.get((bytes(job_id), i))
            if entry is None:
                continue
            if entry[2]:
                values[i] = entry[1]
                revealed |= 1 << i
            else:
                committed_only |= 1 << i
        return values, revealed, committed_only

    def job_status(self, job_id: JobId) -> tuple[JobStatus, int]:
        job = self.world.jobs.get(bytes(job_id))
        if job is None:
            return JobStatus.NONE, 0
        return job.status, len(job.assignment)

    def job_terms(self, job_id: JobId) -> JobTerms:
        return self._job(job_id).terms

    def get_job(self, job_id: JobId) -> JobInfo:
        job = self._job(job_id)
        return JobInfo(
            job_id=job_id,
            status=job.status,
            assigned=len(job.assignment),
            terms=job.terms,
            spec_digest=job.spec_digest,
            spec_cid=job.spec_cid,
            assignment=tuple(job.assignment),
            created_block=job.created_block,
        )

    def get_assignment(self, job_id: JobId) -> list[Assignment]:
        return list(self._job(job_id).assignment)

    def account_info(self, account: str) -> AccountInfo:
        a = self.world.accounts.get(parse_address(account), _Account())
        return AccountInfo(owed=Wei(a.owed), lifetime=Wei(a.lifetime), nonce=a.nonce)

    def claimable(self, account: str) -> Wei:
        who = parse_address(account)
        earned = self.world.providers.get(who, _Provider()).earned
        return Wei(self.account_info(who).owed + earned)

    # helpers -----------------------------------------------------------------
    def _begin(self) -> str:
        self.world._mine()
        self._tx += 1
        return "0x" + keccak(text=f"{self._address}:{self._tx}:{self.world.block}").hex()

    def _receipt(self, tx: str) -> Receipt:
        events = tuple(e for e in self.world.events if e.tx_hash == tx)
        return Receipt(tx_hash=tx, block_number=self.world.block, gas_used=0, events=events)

    def _job(self, job_id: JobId, *allowed: JobStatus) -> _Job:
        job = self.world.jobs.get(bytes(job_id))
        if job is None:
            raise E.JobNotFound(jobId=bytes(job_id))
        if allowed and job.status not in allowed:
            raise E.WrongStatus(jobId=bytes(job_id), status=int(job.status))
        return job

    def _decide(self, s: Settlement) -> tuple[int, int, bytes]:
        """(winners mask, slashed mask, result) for one settlement, or the contract's error."""
        w = self.world
        jid = bytes(s.job_id)
        job = self._job(s.job_id, JobStatus.ASSIGNED)
        t = job.terms
        n = len(job.assignment)
        if len(s.assignment) != n or len(s.entries) != n:
            raise E.LengthMismatch()
        if assignment_hash(s.assignment) != assignment_hash(job.assignment):
            raise E.RecordMismatch(jobId=jid)
        if self._address != t.coordinator:
            raise E.NotCoordinator(jobId=jid, caller=self._address)
        if w.time + 1 > t.settle_deadline:
            raise E.SettleDeadlinePassed(jobId=jid, deadline=t.settle_deadline)
        revealed = signed = 0
        values = [e.value for e in s.entries]
        for i, (a, e) in enumerate(zip(job.assignment, s.entries, strict=True)):
            if e.kind == EntryKind.NONE:
                own = w.on_chain.get((jid, i))
                if own is not None and own[2]:  # the provider's own on-chain reveal counts
                    values[i] = own[1]
                    revealed |= 1 << i
                    signed += 1
                continue
            if e.kind not in (EntryKind.REVEAL, EntryKind.COMMIT) or e.signature is None:
                raise E.InvalidSignatureKind(index=i, kind=int(e.kind))
            if not _signed_by(w, s.job_id, a.provider, e.kind, e.value, e.salt, e.signature):
                raise E.InvalidSignature(jobId=jid, provider=a.provider)
            signed += 1
            if e.kind == EntryKind.REVEAL:
                revealed |= 1 << i
        slashes = 0
        if t.mode == CompareMode.EXACT:
            if s.winners != 0:
                raise E.InvalidWinners(jobId=jid, winners=s.winners)
            winners = _majority(values, revealed)
            for i, e in enumerate(s.entries):
                if e.kind != EntryKind.NONE and not winners >> i & 1:
                    slashes |= 1 << i
        else:
            winners = s.winners
            if winners == 0 or winners & ~revealed:
                raise E.InvalidWinners(jobId=jid, winners=winners)
        if _bits(winners) * 2 <= max(signed, t.redundancy):
            raise E.NoMajority(jobId=jid)
        first = (winners & -winners).bit_length() - 1
        return winners, slashes, values[first]


_ZERO = parse_address("0x0000000000000000000000000000000000000000")


def _check_request(r: JobRequest, now: int, factor: int) -> None:
    if not 1 <= r.redundancy <= MAX_REDUNDANCY:
        raise E.InvalidRedundancy(redundancy=r.redundancy)
    if int(r.mode) not in (0, 1):
        raise E.InvalidMode(mode=int(r.mode))
    if int(parse_address(r.coordinator), 16) == 0:
        raise E.InvalidCoordinator()
    if r.price_cap == 0 or r.price_cap * factor > UINT56_MAX:
        raise E.InvalidPriceCap(priceCap=r.price_cap)
    cid_length = len(r.spec_cid.encode())
    if cid_length == 0 or cid_length > MAX_SPEC_CID_LENGTH:
        raise E.InvalidSpecCid(length=cid_length)
    if (
        r.assign_deadline <= now
        or r.commit_deadline < r.assign_deadline
        or r.settle_deadline < r.commit_deadline
        or r.settle_deadline > now + MAX_JOB_DURATION_S
    ):
        raise E.InvalidDeadlines()


def _check_lock(w: FakeWorld, assignment: list[Assignment], first_new: int) -> None:
    groups: list[int] = []
    seen: list[Address] = []
    for i, a in enumerate(assignment):
        who = parse_address(a.provider)
        p = w.providers.get(who, _Provider())
        if i >= first_new:
            if not p.registered:
                raise E.ProviderNotRegistered(provider=who)
            if p.stake < w.min_stake:
                raise E.StakeBelowMinimum(provider=who, stake=p.stake, minimum=w.min_stake)
            need = a.price * w.stake_factor
            if need > p.stake - p.locked:
                raise E.InsufficientFreeStake(provider=who, free=p.stake - p.locked, needed=need)
        if who in seen:
            raise E.DuplicateProvider(provider=who)
        if p.group != 0 and p.group in groups:
            raise E.SameOperatorGroup(provider=who, group=p.group)
        seen.append(who)
        groups.append(p.group)


def _signed_by(
    w: FakeWorld,
    job_id: JobId,
    provider: Address,
    kind: EntryKind,
    value: bytes,
    salt: bytes,
    sig: Signature,
) -> bool:
    if int.from_bytes(sig.s, "big") > HALF_ORDER:
        return False
    chain_id, market = w.deployment.chain_id, w.deployment.market
    try:
        if kind == EntryKind.REVEAL:
            signer = recover_reveal(chain_id, market, job_id, provider, value, salt, sig)
        else:
            signer = recover_commit(chain_id, market, job_id, provider, value, sig)
    except SignatureError:
        return False
    return signer == provider


def _bits(mask: int) -> int:
    return bin(mask).count("1")


def _majority(values: list[bytes], revealed: int) -> int:
    best = best_count = 0
    for i, value in enumerate(values):
        if not revealed >> i & 1:
            continue
        mask = 0
        for k in range(i, len(values)):
            if revealed >> k & 1 and values[k] == value:
                mask |= 1 << k
        count = bin(mask).count("1")
        if count > best_count:
            best, best_count = mask, count
    return best
