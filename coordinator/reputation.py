"""Provider reputation as the coordinator keeps it: proofs.reputation per provider, persisted.

Seeded from the registry's on-chain counters the first time a provider is seen (so a
restarted coordinator does not forget), updated from every verified outcome.
"""

from __future__ import annotations

from collections.abc import Callable

from proofs.policy import ProviderStanding
from proofs.reputation import Reputation, ReputationParams

ESTABLISHED_EVIDENCE = 20.0


class ReputationBook:
    def __init__(self, clock: Callable[[], float], params: ReputationParams | None = None) -> None:
        self.clock = clock
        self.params = params or ReputationParams()
        self._by_address: dict[str, Reputation] = {}

    def load(self, stored: dict[str, tuple[float, float, float]]) -> None:
        for address, (alpha, beta, at) in stored.items():
            self._by_address[address] = Reputation(alpha, beta, at, self.params)

    def known(self, address: str) -> bool:
        return address in self._by_address

    def seed(self, address: str, completed: int, slashed: int) -> Reputation:
        """Start a provider from its on-chain counters (only if not known already)."""
        if address not in self._by_address:
            self._by_address[address] = Reputation.from_counters(
                completed, slashed, self.clock(), self.params
            )
        return self._by_address[address]

    def get(self, address: str) -> Reputation:
        return self._by_address.get(address) or Reputation.fresh(self.clock(), self.params)

    def record(self, address: str, *, success: bool) -> Reputation:
        now = self.clock()
        rep = self.get(address)
        rep = rep.record_success(now) if success else rep.record_slash(now)
        self._by_address[address] = rep
        return rep

    def lower_bound(self, address: str) -> float:
        return self.get(address).lower_bound(self.clock())

    def newcomer(self, address: str) -> bool:
        return self.get(address).evidence(self.clock()) < ESTABLISHED_EVIDENCE

    def standing(self, address: str, slashable_stake: int) -> ProviderStanding:
        rep = self.get(address)
        now = self.clock()
        return ProviderStanding(
            slashable_stake=slashable_stake,
            verified_jobs=int(rep.evidence(now)),
            slashes=0,
            reputation_lcb=rep.lower_bound(now),
        )
