"""The in-memory registry half of the market: providers (register, stake, unbond, withdraw, stake
locks) and coordinator bonds, on top of :class:`~contracts.fake_ledger.FakeLedger`."""

from __future__ import annotations

from dataclasses import dataclass

from contracts import errors as E
from contracts.fake_ledger import FAKE_MARKET, FakeLedger
from contracts.models import Seat
from protocol.ids import Address, parse_address

UINT56_MAX = 2**56 - 1
UINT64_MAX = 2**64 - 1


@dataclass
class Provider:
    registered: bool = False
    group: int = 0
    stake: int = 0
    locked: int = 0
    earned: int = 0
    completed: int = 0
    slashed: int = 0


@dataclass
class Unbonding:
    amount: int = 0
    ready_at: int = 0


@dataclass
class BondedCoordinator:
    bond: int = 0
    unbonding: int = 0
    ready_at: int = 0


class FakeRegistry(FakeLedger):
    """Providers, their stake and locks, and bonded coordinators."""

    def __init__(
        self,
        *,
        min_stake: int,
        unbonding_delay: int,
        stake_factor: int,
        min_coordinator_bond: int,
        coordinator_unbond_delay: int,
        chain_id: int,
        start_time: int,
        minter: str | None,
    ) -> None:
        super().__init__(chain_id=chain_id, start_time=start_time, minter=minter)
        self.min_stake = min_stake
        self.unbonding_delay = unbonding_delay
        self.stake_factor = stake_factor
        self.min_coordinator_bond = min_coordinator_bond
        self.coordinator_unbond_delay = coordinator_unbond_delay
        self.providers: dict[Address, Provider] = {}
        self.unbondings: dict[Address, Unbonding] = {}
        self.coordinators: dict[Address, BondedCoordinator] = {}

    def provider(self, who: str) -> Provider:
        return self.providers.get(parse_address(who), Provider())

    def unbonding(self, who: str) -> Unbonding:
        return self.unbondings.get(parse_address(who), Unbonding())

    def coordinator(self, who: str) -> BondedCoordinator:
        return self.coordinators.get(parse_address(who), BondedCoordinator())

    def register(self, sender: Address, group: int) -> str:
        if self.provider(sender).registered:
            raise E.AlreadyRegistered(provider=sender)
        tx = self._mine(sender)
        self.providers[sender] = Provider(registered=True, group=group)
        self._emit("market", "ProviderRegistered", provider=sender, group=group)
        return tx

    def stake_with_permit(self, sender: Address, amount: int) -> str:
        if amount == 0:
            raise E.ZeroAmount()
        p = self.provider(sender)
        if not p.registered:
            raise E.ProviderNotRegistered(provider=sender)
        total = p.stake + amount
        if total > UINT56_MAX:
            raise E.StakeOverflow(stake=total)
        self._check_pull(sender, amount, permit=True)
        tx = self._mine(sender)
        self._permit(sender, amount)
        self.providers[sender].stake = total
        self._emit("market", "Staked", provider=sender, amount=amount, stake=total)
        self._pull(sender, amount)
        return tx

    def request_unbond(self, sender: Address, amount: int) -> str:
        if amount == 0:
            raise E.ZeroAmount()
        p = self.provider(sender)
        free = p.stake - p.locked
        if amount > free:
            raise E.InsufficientFreeStake(provider=sender, free=free, needed=amount)
        tx = self._mine(sender)
        self.providers[sender].stake -= amount
        u = self.unbondings.setdefault(sender, Unbonding())
        u.amount += amount
        u.ready_at = self.time + self.unbonding_delay
        self._emit(
            "market",
            "UnbondRequested",
            provider=sender,
            amount=amount,
            unbonding=u.amount,
            readyAt=u.ready_at,
        )
        return tx

    def withdraw(self, sender: Address) -> str:
        u = self.unbonding(sender)
        if u.amount == 0:
            raise E.NothingToWithdraw(provider=sender)
        if self.next_time < u.ready_at:
            raise E.UnbondingNotReady(provider=sender, readyAt=u.ready_at)
        tx = self._mine(sender)
        del self.unbondings[sender]
        self._emit("market", "Withdrawn", provider=sender, amount=u.amount)
        self._transfer(FAKE_MARKET, sender, u.amount)
        return tx

    def bond_coordinator(self, sender: Address, amount: int) -> str:
        if amount == 0:
            raise E.ZeroAmount()
        total = self.coordinator(sender).bond + amount
        if total > UINT64_MAX:
            raise E.StakeOverflow(stake=total)
        self._check_pull(sender, amount, permit=True)
        tx = self._mine(sender)
        self._permit(sender, amount)
        self.coordinators.setdefault(sender, BondedCoordinator()).bond = total
        self._emit("market", "CoordinatorBonded", coordinator=sender, amount=amount, bond=total)
        self._pull(sender, amount)
        return tx

    def request_coordinator_unbond(self, sender: Address, amount: int) -> str:
        if amount == 0:
            raise E.ZeroAmount()
        c = self.coordinator(sender)
        if amount > c.bond:
            raise E.InsufficientBond(coordinator=sender, bond=c.bond, amount=amount)
        tx = self._mine(sender)
        c = self.coordinators[sender]
        c.bond -= amount
        c.unbonding += amount
        c.ready_at = self.time + self.coordinator_unbond_delay
        self._emit(
            "market",
            "CoordinatorUnbondRequested",
            coordinator=sender,
            amount=amount,
            unbonding=c.unbonding,
            readyAt=c.ready_at,
        )
        return tx

    def withdraw_coordinator_bond(self, sender: Address) -> str:
        c = self.coordinator(sender)
        if c.unbonding == 0:
            raise E.NothingToWithdraw(provider=sender)
        if self.next_time < c.ready_at:
            raise E.UnbondingNotReady(provider=sender, readyAt=c.ready_at)
        tx = self._mine(sender)
        amount = c.unbonding
        c.unbonding = c.ready_at = 0
        self._emit("market", "CoordinatorWithdrawn", coordinator=sender, amount=amount)
        self._transfer(FAKE_MARKET, sender, amount)
        return tx

    def claim(self, sender: Address) -> str:
        owed = self.account(sender).owed
        earned = self.provider(sender).earned
        if owed + earned == 0:
            raise E.NothingToClaim(account=sender)
        tx = self._mine(sender)
        if owed:
            self.accounts[sender].owed = 0
        if earned:
            self.providers[sender].earned = 0
        self._emit("market", "Claimed", account=sender, amount=owed + earned)
        self._transfer(FAKE_MARKET, sender, owed + earned)
        return tx

    def _check_lock(self, providers: list[Address], locks: list[int], first_new: int) -> None:
        """``MarketBase._lock`` without changing anything: each new entry's provider
        must be registered with enough stake; addresses and operator groups distinct."""
        locked: dict[Address, int] = {}
        groups: list[int] = []
        for i, who in enumerate(providers):
            p = self.provider(who)
            cur_locked = locked.get(who, p.locked)
            if i >= first_new:
                if not p.registered:
                    raise E.ProviderNotRegistered(provider=who)
                if p.stake < self.min_stake:
                    raise E.StakeBelowMinimum(provider=who, stake=p.stake, minimum=self.min_stake)
                free = p.stake - cur_locked
                if locks[i] > free:
                    raise E.InsufficientFreeStake(provider=who, free=free, needed=locks[i])
                locked[who] = cur_locked + locks[i]
            for j, other in enumerate(providers[:i]):
                if other == who:
                    raise E.DuplicateProvider(provider=who)
                if p.group != 0 and groups[j] == p.group:
                    raise E.SameOperatorGroup(provider=who, group=p.group)
            groups.append(p.group)

    def _release(self, seats: list[Seat]) -> None:
        for s in seats:
            self.providers[s.provider].locked -= s.price * self.stake_factor
