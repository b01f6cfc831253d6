"""The matcher on a live book: scores are kept per slot and redone only where the book
changed, so every change (advert, stake, reputation, measurement, reservation, in-flight
GPUs, a busy refusal, a departure) must reach the next match exactly as a fresh matcher
would see it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np
import pytest

from coordinator.errors import NoCandidates
from coordinator.matching import columns as columns_module
from coordinator.matching.columns import DTYPE_INDEX, ProviderColumns
from coordinator.matching.matcher import Matcher, PricePerTflop, Ranking
from coordinator.matching.requirements import Requirements
from tests.coordinator.factories import UNIT, offer

FINGERPRINTS = ("A10/cuda12/torch2.13", "H100/cuda12/torch2.13", "cpu")


def random_offer(rng: random.Random, i: int) -> object:
    gpus = rng.choice([0, 1, 2, 4])
    return offer(
        i,
        gpu_count=gpus,
        free_gpus=rng.randint(0, gpus),
        tflops={"fp32": rng.uniform(1, 60), "bf16": rng.uniform(0, 700)},
        rate_per_gpu_hour=rng.randint(1, 5 * UNIT),
        rate_per_cpu_hour=rng.randint(1, UNIT),
        fingerprint=rng.choice(FINGERPRINTS),
        utilization=rng.random(),
    )


def mutations(cols: ProviderColumns, rng: random.Random) -> list[Callable[[int], object]]:
    """Every way the coordinator changes the book, each applied to provider ``i``."""

    def address(i: int) -> str:
        return str(offer(i).address)

    def around_adverts() -> float:
        """A time some seconds either side of the adverts' (``seen_at`` is now), so that
        reservations, releases and refusals fall both before and after them."""
        return time.time() + rng.uniform(-5.0, 5.0)

    return [
        lambda i: cols.upsert(random_offer(rng, i)),  # type: ignore[arg-type]
        lambda i: cols.set_stake(address(i), rng.randint(0, 100) * UNIT, rng.randint(0, 3)),
        lambda i: cols.set_reputation(address(i), rng.random(), rng.random() < 0.3),
        lambda i: cols.set_measured(address(i), rng.choice(list(DTYPE_INDEX)), rng.uniform(1, 80)),
        lambda i: cols.set_reserved(address(i), rng.randint(0, 3), around_adverts()),
        lambda i: cols.mark_full(address(i), around_adverts()),
        lambda i: cols.add_inflight(address(i), rng.randint(-1, 2), float(rng.randint(1, 10**6))),
        lambda i: cols.settle_inflight(address(i), float(10**7), 1.0),
        lambda i: cols.remove(address(i)),
    ]


def requirements(rng: random.Random) -> Requirements:
    gpus = rng.choice([0, 1, 2])
    return Requirements(
        count=rng.choice([1, 2]),
        gpus=gpus,
        price_cap=rng.randint(1, 20) * UNIT,
        duration_s=rng.choice([600, 3600]),
        min_tflops=rng.choice([{}, {"bf16": 100.0}]) if gpus else {},
        exact=rng.random() < 0.5,
    )


def chosen(matcher: Matcher, req: Requirements) -> list[str] | str:
    try:
        return [c.address for c in matcher.match(req).chosen]
    except NoCandidates as exc:
        return f"none: {sorted(exc.reasons.items())}"


def explained(matcher: Matcher, req: Requirements) -> list[tuple[str, str]]:
    """The match's whole explanation: who was chosen, who lost and why."""
    try:
        candidates = matcher.match(req).candidates
    except NoCandidates as exc:
        candidates = exc.filtered
    return [(c.address, c.reason) for c in candidates]


@pytest.mark.parametrize("seed", range(4))
def test_every_change_reaches_the_next_match_as_a_fresh_matcher_sees_it(seed: int) -> None:
    rng = random.Random(seed)
    cols = ProviderColumns(capacity=4)
    for i in range(40):
        cols.upsert(random_offer(rng, i))  # type: ignore[arg-type]
        cols.set_stake(str(offer(i).address), 100 * UNIT, 0)
    live = Matcher(cols, exploration_share=0.0)
    changes = mutations(cols, rng)
    for _ in range(300):
        rng.choice(changes)(rng.randrange(48))  # some touch providers not (or no longer) there
        req = requirements(rng)
        fresh = Matcher(cols, exploration_share=0.0)
        assert chosen(live, req) == chosen(fresh, req)
        assert explained(live, req) == explained(fresh, req)
        assert cols.free_jobs().tolist() == cols._free_jobs_of(slice(0, cols.size)).tolist()
        for dtype in DTYPE_INDEX.values():
            for cpu in (False, True):
                full = PricePerTflop().score(cols, dtype, cpu)
                assert np.array_equal(live.scores(dtype, cpu), full)
                assert live.ranking(dtype, cpu).ordered().tolist() == (
                    np.argsort(full, kind="stable").tolist()
                )


def test_a_forgotten_change_log_rescores_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns_module, "CHANGE_LOG_MIN", 8)
    rng = random.Random(5)
    cols = ProviderColumns(capacity=2)
    for i in range(3):
        cols.upsert(random_offer(rng, i))  # type: ignore[arg-type]
    live = Matcher(cols, exploration_share=0.0)
    before = live.scores(0).copy()
    seen = cols.version
    for _ in range(20):  # more changes than the log keeps
        cols.set_reputation(str(offer(1).address), rng.random(), False)
    assert cols.changed_since(seen) is None
    after = live.scores(0)
    assert np.array_equal(after, PricePerTflop().score(cols, 0, False))
    assert after[1] != before[1] and after[0] == before[0]


def test_a_new_cheaper_advert_wins_the_very_next_match() -> None:
    cols = ProviderColumns()
    for i in range(5):
        cols.upsert(offer(i, rate_per_gpu_hour=2 * UNIT))
        cols.set_stake(str(offer(i).address), 100 * UNIT, 0)
    live = Matcher(cols, exploration_share=0.0)
    req = Requirements(count=1, price_cap=10 * UNIT, duration_s=3600)
    assert chosen(live, req) == [offer(0).address]  # equal scores: the lowest slot
    cols.upsert(offer(9, rate_per_gpu_hour=UNIT))
    cols.set_stake(str(offer(9).address), 100 * UNIT, 0)
    assert chosen(live, req) == [offer(9).address]
    # Its job slot taken by a reservation, the next match goes back to the others.
    cols.set_reserved(str(offer(9).address), 1, 1.0)
    assert chosen(live, req) == [offer(0).address]
    cols.set_reserved(str(offer(9).address), 0, 2.0)
    assert chosen(live, req) == [offer(9).address]


def test_a_ranking_takes_the_lowest_scores_ties_to_the_lower_slot() -> None:
    ranking = Ranking(0, np.array([3.0, 1.0, 2.0, 1.0, 5.0, 1.0]))
    everyone = np.ones(6, dtype=bool)
    assert ranking.ordered().tolist() == [1, 3, 5, 2, 0, 4]
    assert ranking.first(everyone, 2).tolist() == [1, 3]
    assert ranking.first(everyone, 10).tolist() == [1, 3, 5, 2, 0, 4]
    assert ranking.first(np.array([True, False, True, False, True, False]), 10).tolist() == [
        2,
        0,
        4,
    ]
    assert ranking.first(everyone, 0).tolist() == []


@pytest.mark.parametrize("seed", range(6))
def test_a_rescored_ranking_is_the_ranking_made_afresh(seed: int) -> None:
    """Moved slots merged in by :meth:`Ranking.first`, and placed by :meth:`Ranking.settle`
    (now and then, and whenever too many moved), give what a ranking made afresh gives,
    ties included (scores drawn from a few values, so most land among equal scores)."""
    rng = np.random.default_rng(seed)
    size = 50
    ranking = Ranking(0, rng.integers(0, 6, size).astype(np.float64))
    for version in range(1, 300):
        grown = size + int(rng.integers(0, 3))
        changed = np.unique(
            np.concatenate(
                [rng.integers(0, grown, int(rng.integers(1, 9))), np.arange(size, grown)]
            )
        )
        new = rng.integers(0, 6, len(changed)).astype(np.float64)
        ranking.rescore(version, changed, new, grown)
        size = grown
        fresh = Ranking(version, ranking.scores.copy())
        for _ in range(3):
            wanted = rng.random(size) < rng.choice([0.05, 0.5, 1.0])
            k = int(rng.integers(0, 20))
            assert ranking.first(wanted, k).tolist() == fresh.first(wanted, k).tolist()
        if version % 25 == 0:
            assert ranking.ordered().tolist() == fresh.ordered().tolist()
            assert ranking.keys.tolist() == fresh.keys.tolist()


def test_first_finds_a_rare_kind_far_down_the_ranking() -> None:
    ranking = Ranking(0, np.arange(5000, dtype=np.float64))
    wanted = np.zeros(5000, dtype=bool)
    wanted[[4998, 17, 3000]] = True
    assert ranking.first(wanted, 2).tolist() == [17, 3000]
    assert ranking.first(wanted, 5).tolist() == [17, 3000, 4998]


def test_a_provider_changing_its_packages_every_advert_cannot_grow_the_book() -> None:
    cols = ProviderColumns()
    for i in (0, 9):
        cols.upsert(offer(i, packages={"numpy": "2.1.0"}))
        cols.set_stake(str(offer(i).address), 100 * UNIT, 0)
    live = Matcher(cols, exploration_share=0.0)
    needs = Requirements(count=1, price_cap=10 * UNIT, packages=(("numpy", ">=3"),))
    for n in range(200):  # a new package list in every advert, none with numpy 3
        cols.upsert(offer(9, packages={"numpy": f"1.{n}.0"}))
        assert chosen(live, needs) == "none: [('its Python lacks numpy>=3', 2)]"
    assert len(cols.environments) <= 2 * len(cols) + columns_module.ENVIRONMENT_SLACK
    assert cols.environments_epoch > 0  # unused environments were dropped and renumbered
    # A verdict kept from before the renumbering must not stand for the new environment.
    cols.upsert(offer(9, packages={"numpy": "3.0.0"}))
    assert chosen(live, needs) == [offer(9).address] == chosen(Matcher(cols), needs)


def test_changed_slots_are_each_changed_slot_once_in_order() -> None:
    cols = ProviderColumns(capacity=2)
    for i in range(6):
        cols.upsert(offer(i))
    seen = cols.version
    for i in (4, 1, 4, 3, 1, 4):
        cols.set_reputation(str(offer(i).address), 0.5, False)
    changed = cols.changed_slots(seen)
    assert changed is not None and changed.dtype == np.int64
    assert changed.tolist() == [1, 3, 4]
    assert cols.changed_slots(cols.version) is not None
    assert cols.changed_slots(cols.version).tolist() == []  # type: ignore[union-attr]


def test_a_slot_rescored_again_before_settling_is_merged_once() -> None:
    """A slot that moves twice keeps one place among the moved: :meth:`Ranking.first`
    returns it once, at its latest score, and skips it where it stood; a wanted set holding
    none of the moved slots reads the order as it stands."""
    ranking = Ranking(0, np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    everyone = np.ones(5, dtype=bool)
    ranking.rescore(1, np.array([3]), np.array([0.5]), 5)
    ranking.rescore(2, np.array([1, 3]), np.array([4.5, 2.5]), 5)
    assert ranking.moved_slots.tolist().count(3) == 1
    assert ranking.first(everyone, 5).tolist() == [0, 3, 2, 1, 4]
    assert ranking.first(everyone, 2).tolist() == [0, 3]
    unmoved = np.array([True, False, True, False, True])
    assert ranking.first(unmoved, 5).tolist() == [0, 2, 4]
    assert ranking.ordered().tolist() == [0, 3, 2, 1, 4]
    assert ranking.keys.tolist() == [1.0, 2.5, 3.0, 4.5, 5.0]


def test_a_slot_rescored_to_its_own_score_keeps_its_place_and_a_new_slot_is_placed() -> None:
    ranking = Ranking(0, np.array([1.0, 2.0, 3.0]))
    ranking.rescore(1, np.array([0, 2]), np.array([1.0, 3.0]), 3)  # an advert repeated
    assert ranking.moved_slots.tolist() == [] and not ranking.moved.any()
    assert ranking.version == 1
    # A new slot scoring exactly what an unscored slot holds (0) is placed all the same.
    ranking.rescore(2, np.array([1, 3]), np.array([2.0, 0.0]), 4)
    assert ranking.moved_slots.tolist() == [3]
    assert ranking.first(np.ones(4, dtype=bool), 4).tolist() == [3, 0, 1, 2]
    assert ranking.ordered().tolist() == [3, 0, 1, 2]


def test_free_job_slots_follow_each_write_at_the_advert_lag_and_a_refusal() -> None:
    cols = ProviderColumns()
    t = 1000.0
    cols.upsert(offer(0, seen_at=t, utilization=0.5))  # 2 job slots, 1 running
    a = str(offer(0).address)

    def free() -> int:
        assert cols.free_jobs().tolist() == cols._free_jobs_of(slice(0, cols.size)).tolist()
        return int(cols.free_jobs()[0])

    assert free() == 1
    cols.set_reserved(a, 2, t - 3)
    assert free() == 0
    # Released half a second before the advert: it may still show that job running.
    cols.set_reserved(a, 0, t - 0.5)
    assert free() == 2
    cols.mark_full(a, t)  # refused as busy, as late as its last advert
    assert free() == 0
    cols.upsert(offer(0, seen_at=t + 2, utilization=0.5))  # a newer advert: 1 of 2 running
    assert free() == 1
