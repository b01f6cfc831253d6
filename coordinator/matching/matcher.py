"""Matching: filter the book, score what is left, pick r distinct operators, explain why.

Filtering and scoring run over the book's columns (:mod:`coordinator.matching.columns`) in numpy.
The book is live (adverts, stakes, reputations and reservations change between matches), so
each score kind keeps a :class:`Ranking`: every slot's score and all slots in score order
(ties go to the lower slot), brought up to date by rescoring and re-placing only the slots
the book reports as changed. A match filters every slot, then walks the ranking from its
best end until it has the few it needs. The score is a plug point
(:class:`ScoreStrategy`, registry :data:`STRATEGIES`); lower is better. The default
scores price per effective TFLOP, divided by a reputation factor and raised by current load.
A bounded share of matches gives one seat to a promising newcomer (exploration), so
providers without a record are never starved by those with one. Every match keeps an
explanation: why each chosen provider won and, for a sample of the others, why they lost.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from coordinator.errors import NoCandidates
from coordinator.matching.columns import DTYPE_INDEX, MAX_JOB_SLOTS, RUNTIME_BITS, ProviderColumns
from coordinator.matching.requirements import Requirements
from protocol import compat
from protocol.packages import unmet
from protocol.units import describe_size

EXPLAIN_LOSERS = 12
EXPLAIN_FILTERED = 12
SHORTLIST = 64
EXPLORE_POOL = 8
MAX_PACKAGE_SETS = 256
"""Distinct ``runtime.packages`` requirements whose verdicts per environment are kept (and
distinct ``resources.requires`` whose verdicts per GPU platform are kept)."""

Detail = Callable[[int], str]
"""Says why one slot failed a filter, in its own terms (``driver 535.104 < 550.54``)."""
Check = tuple[str, np.ndarray, Detail | None]
"""(reason, passes per slot, per-slot detail of a failure or None)."""


class Choice(NamedTuple):
    """A provider chosen for a seat, at its price."""

    address: str
    peer_id: str
    multiaddrs: tuple[str, ...]
    price: int
    """The most the seat can earn: its rate for the job's expected duration, at most the cap."""
    rate_per_hour: int
    """What the seat is billed per hour: the provider's GPU-hour rate times the job's GPUs,
    or its CPU-hour rate for a job asking for no GPU (:func:`seat_rate`)."""
    score: float
    fingerprint: str
    explored: bool = False


class Candidate(NamedTuple):
    """One line of a job's explanation (a tuple: a match makes a few dozen)."""

    address: str
    peer_id: str
    score: float | None
    chosen: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "peer_id": self.peer_id,
            "score": self.score,
            "chosen": self.chosen,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Match:
    chosen: list[Choice]
    candidates: list[Candidate]
    eligible: int
    filtered: dict[str, int]


class ScoreStrategy(Protocol):
    """Scores slots of the book for jobs priced against one dtype; lower is better.

    Scores are per unit of work (a GPU-hour's price over its TFLOPS, or a CPU-hour's for
    jobs asking for no GPU: ``cpu``), so the ranking they give holds for any job size. A
    slot's score may depend only on that slot's columns: the matcher keeps scores and
    redoes only the slots that changed (``slots``; None: every slot of the book).
    """

    def score(
        self, cols: ProviderColumns, dtype: int, cpu: bool, slots: np.ndarray | None = None
    ) -> np.ndarray: ...


def primary_dtype(req: Requirements) -> int:
    """The dtype whose TFLOPS a job is priced against (its most demanding one, else fp32)."""
    if req.min_tflops:
        name = max(req.min_tflops, key=lambda d: req.min_tflops[d])
        return DTYPE_INDEX[name]
    return DTYPE_INDEX["fp32"]


@dataclass(frozen=True)
class PricePerTflop:
    """Price per effective TFLOP, adjusted by reputation (lower bound) and load."""

    reputation_weight: float = 0.5
    load_weight: float = 1.0

    def score(
        self, cols: ProviderColumns, dtype: int, cpu: bool, slots: np.ndarray | None = None
    ) -> np.ndarray:
        at: slice | np.ndarray = slice(0, cols.size) if slots is None else slots
        rate = cols.cpu_rate if cpu else cols.rate
        per_tflop = (rate[at] + 1.0) / np.maximum(cols.tflops[:, dtype][at], 1e-6)
        trust = (1.0 - self.reputation_weight) + self.reputation_weight * cols.reputation[at]
        gpus = np.maximum(cols.gpu_count[at], 1)
        held = cols.reserved_jobs[at] / np.maximum(cols.job_capacity[at], 1)
        load = np.maximum(cols.utilization[at], held) + cols.inflight_gpus[at] / gpus
        result: np.ndarray = per_tflop * (1.0 + self.load_weight * load) / trust
        return result


STRATEGIES: dict[str, Callable[[], ScoreStrategy]] = {"price-per-tflop": PricePerTflop}


def seat_rate(rate_per_gpu_hour: int, rate_per_cpu_hour: int, req: Requirements) -> int:
    """A provider's rate per hour for a seat of the job: its GPU-hour rate times the GPUs,
    or its CPU-hour rate when the job asks for no GPU (at least one unit: the contract
    refuses a zero rate)."""
    return max(1, rate_per_gpu_hour * req.gpus if req.gpus else rate_per_cpu_hour)


def exact_price(rate_per_hour: int, req: Requirements) -> int:
    """A seat's price for a job: its :func:`seat_rate` times the expected hours, at most the
    job's cap and at least one unit (the contract refuses a price of zero)."""
    return max(1, min(rate_per_hour * req.duration_s // 3600, req.price_cap))


MOVED_LIMIT = 256
"""Rescored slots a :class:`Ranking` leaves out of place before it places them all at once."""


class Ranking:
    """Every slot's score for one kind of job, and the slots in score order.

    ``order`` holds the slots lowest score first, ties to the lower slot, ``keys`` their
    scores in that order. A rescored slot (:meth:`rescore`) is marked moved and left where
    it was: :meth:`first` skips it there and merges the moved slots in by their new scores.
    Once :data:`MOVED_LIMIT` slots have moved they are all placed in one pass
    (:meth:`settle`), so a live book pays neither a sort nor a pass over the book per match.
    """

    def __init__(self, version: int, scores: np.ndarray) -> None:
        self.version = version
        self.scores = scores
        self.order = np.argsort(scores, kind="stable")  # stable: equal scores by slot
        self.keys = scores[self.order]
        self.moved = np.zeros(len(scores), dtype=bool)
        self.moved_slots = np.zeros(0, dtype=np.int64)

    def rescore(self, version: int, slots: np.ndarray, new: np.ndarray, size: int) -> None:
        """Give ``slots`` (distinct, ascending) the scores ``new``, the book having grown to
        ``size`` slots (every new slot is among ``slots``)."""
        placed = len(self.order)
        if len(self.scores) < size:
            grown = size - len(self.scores)
            self.scores = np.concatenate([self.scores, np.zeros(grown)])
            self.moved = np.concatenate([self.moved, np.zeros(grown, dtype=bool)])
        self.version = version
        # A slot whose score did not change keeps its place (an advert that repeats the
        # last one, a reservation taken and given back): only new slots and changed ones move.
        differs = (self.scores[slots] != new) | (slots >= placed)
        if not differs.all():
            slots, new = slots[differs], new[differs]
            if not len(slots):
                return
        self.scores[slots] = new
        fresh = slots[~self.moved[slots]]  # a slot moved twice is listed once
        self.moved[fresh] = True
        listed = np.concatenate([self.moved_slots, fresh])
        # Kept in score order (ties to the lower slot), so :meth:`first` merges only those
        # that beat what it found in place.
        self.moved_slots = listed[np.lexsort((listed, self.scores[listed]))]
        if len(self.moved_slots) > MOVED_LIMIT:
            self.settle()

    def settle(self) -> None:
        """Place every moved slot by its new score."""
        slots = self.moved_slots
        if not len(slots):
            return
        kept = ~self.moved[self.order]  # slots new to the book are in no place yet
        order, keys = self.order[kept], self.keys[kept]
        new = self.scores[slots]
        by_rank = np.lexsort((slots, new))
        slots, new = slots[by_rank], new[by_rank]
        at = np.searchsorted(keys, new, "left")
        ends = np.searchsorted(keys, new, "right")
        for i in np.flatnonzero(ends > at):  # equal scores already there: by slot among them
            at[i] += np.searchsorted(order[at[i] : ends[i]], slots[i])
        # ``at`` does not decrease, so the moved slots land, in the order sorted above, at
        # ``at`` shifted by the moved slots placed before them.
        placed = np.zeros(len(order) + len(slots), dtype=bool)
        placed[at + np.arange(len(slots))] = True
        stayed = ~placed
        self.order = np.empty(len(placed), dtype=order.dtype)
        self.order[placed], self.order[stayed] = slots, order
        self.keys = np.empty(len(placed), dtype=keys.dtype)
        self.keys[placed], self.keys[stayed] = new, keys
        self.moved[:] = False
        self.moved_slots = slots[:0]

    def ordered(self) -> np.ndarray:
        """Every slot, best first."""
        self.settle()
        return self.order

    def first(self, wanted: np.ndarray, k: int) -> np.ndarray:
        """The best ``k`` slots that ``wanted`` (per slot) holds, best first. Looks at growing
        runs of ``order`` from the best end, so a common kind costs only the first run, and
        merges in the moved slots it wants."""
        if k <= 0:
            return self.order[:0]
        extra = self.moved_slots[wanted[self.moved_slots]]
        # A moved slot is skipped where it stood only when wanted: the rest ``wanted`` skips.
        moved = self.moved if len(extra) else None
        found: list[np.ndarray] = []
        count, start, size = 0, 0, max(4 * k, 256)
        while count < k and start < len(self.order):
            run = self.order[start : start + size]
            take = wanted[run]
            if moved is not None:
                take &= ~moved[run]
            hits = run[take]
            found.append(hits)
            count += len(hits)
            start += size
            size *= 4
        if not found:
            best = self.order[:0]
        else:
            best = (found[0] if len(found) == 1 else np.concatenate(found))[:k]
        if len(extra) and len(best) == k:  # only moved slots scoring up to the k-th count
            extra = extra[: np.searchsorted(self.scores[extra], self.scores[best[-1]], "right")]
        if not len(extra):
            return best
        merged = np.concatenate([best, extra[:k]])
        return merged[np.lexsort((merged, self.scores[merged]))][:k]


class Matcher:
    """Chooses providers for jobs from a book's columns."""

    def __init__(
        self,
        cols: ProviderColumns,
        strategy: ScoreStrategy | None = None,
        *,
        stake_factor: int = 5,
        exploration_share: float = 0.1,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 <= exploration_share <= 0.5:
            raise ValueError("exploration share must lie in [0, 0.5]")
        self.cols = cols
        self.strategy = strategy or PricePerTflop()
        self.stake_factor = stake_factor
        self.exploration_share = exploration_share
        self.rng = rng or random.Random()
        self._rankings: dict[tuple[int, bool], Ranking] = {}
        self._environments_ok: dict[tuple[tuple[str, str], ...], list[bool]] = {}
        self._environments_epoch = 0
        self._platforms_unmet: dict[tuple[compat.Requires, str], list[tuple[str, ...]]] = {}
        self._platforms_epoch = 0

    def scores(self, dtype: int, cpu: bool = False) -> np.ndarray:
        """Every slot's score for jobs priced against ``dtype`` (on the CPU-hour rate with
        ``cpu``), current with the book."""
        return self.ranking(dtype, cpu).scores

    def ranking(self, dtype: int, cpu: bool = False) -> Ranking:
        """The :class:`Ranking` for jobs priced against ``dtype`` (on the CPU-hour rate with
        ``cpu``), current with the book: slots changed since the last call are scored and
        placed again, all of them when many changed or the change log was forgotten."""
        cols, key = self.cols, (dtype, cpu)
        n, version = cols.size, cols.version
        cached = self._rankings.get(key)
        if cached is not None and cached.version == version and len(cached.scores) == n:
            return cached
        slots = None if cached is None else cols.changed_slots(cached.version)
        if cached is not None and slots is not None and len(slots) <= max(n // 4, 64):
            new = self.strategy.score(cols, dtype, cpu, slots)
            if not math.isnan(new.sum()):  # a NaN has no place in an order: rank afresh
                cached.rescore(version, slots, new, n)
                return cached
        ranking = self._rankings[key] = Ranking(version, self.strategy.score(cols, dtype, cpu))
        return ranking

    def _filters(self, req: Requirements) -> list[Check]:
        """(reason, passes, detail) per filter over every slot, in the order reasons are
        reported."""
        c, n = self.cols, self.cols.size
        hours = req.duration_s / 3600.0
        hourly = c.rate[:n] * req.gpus if req.gpus else c.cpu_rate[:n]
        checks: list[Check] = [
            ("offline", c.alive[:n], None),
            (
                f"no {req.runtime} runtime",
                (c.runtime_bits[:n] & RUNTIME_BITS[req.runtime]) != 0,
                None,
            ),
        ]
        if req.requires:
            # Before load, price and stake: a provider that can never run the job says so.
            fits, detail = self._fits_platform(req.requires, req.runtime)
            checks.append((f"does not meet requires: {req.requires.describe()}", fits, detail))
        if req.input_bytes:  # as can never: it would refuse the job whatever its load
            checks.append(self._input_fits(req.input_bytes))
        if req.queue == 0:  # a refusal as busy since the last advert already left none free
            room = c.free_jobs() >= 1
        elif req.queue < MAX_JOB_SLOTS:
            # A job to plan queues only where there is room: as many as the provider's
            # advert says it queues, and none at one that refused as busy since its last
            # advert (a quote's unbounded look still counts both).
            queue = np.minimum(req.queue, c.max_queued[:n])
            room = (c.free_jobs() >= 1 - queue) & (c.full_since[:n] < c.seen_at[:n])
        else:
            room = c.free_jobs() >= 1 - req.queue
        checks.append(("busy (no free job slot)", room, None))
        if req.gpus > 0:
            free = c.free_gpus[:n] - c.inflight_gpus[:n]
            checks.append((f"fewer than {req.gpus} free GPUs on one node", free >= req.gpus, None))
            if req.gpu_memory_bytes:
                memory_ok = c.gpu_memory[:n] >= req.gpu_memory_bytes
                checks.append(("too little GPU memory", memory_ok, None))
        for dtype, minimum in req.min_tflops.items():
            column = c.tflops[:n, DTYPE_INDEX[dtype]]
            checks.append((f"below {minimum:g} {dtype} TFLOPS", column >= minimum, None))
        # price = floor(seat rate * hours) <= cap  <=>  seat rate * hours < cap + 1
        cost = hourly * hours
        checks.append(("price above the job's cap", cost < req.price_cap + 1, None))
        stake_needed = np.floor(cost, out=cost)  # in place: ``cost`` is not read again
        stake_needed *= self.stake_factor
        checks.append(("not enough free stake", c.free_stake[:n] >= stake_needed, None))
        if req.packages:
            wanted = ", ".join(f"{name}{spec}" for name, spec in req.packages)
            has = self._has_packages(req.packages)
            checks.append((f"its Python lacks {wanted}", has, None))
        if req.exclude_addresses:
            slots = [c.slot(a) for a in req.exclude_addresses]
            taken = np.zeros(n, dtype=bool)
            taken[[s for s in slots if s is not None]] = True
            checks.append(("already assigned to this job", ~taken, None))
        if req.exclude_groups:
            groups = np.array(sorted(req.exclude_groups), dtype=np.int64)
            clash = np.isin(c.group[:n], groups) & (c.group[:n] != 0)
            checks.append(("same operator group as an assigned provider", ~clash, None))
        if req.exact and req.fingerprint is not None:
            code = c.fingerprint_codes.get(req.fingerprint, -2)
            same = c.fingerprint[:n] == code
            checks.append(("fingerprint differs from the assigned providers", same, None))
        if req.exact and req.checkable:
            unchecked = "no other operator shares its fingerprint to check it"
            checks.append((unchecked, self._checkable(), None))
        return checks

    def capable(self, req: Requirements) -> tuple[int, dict[str, int]]:
        """How many live providers could ever run the job, whatever their load, price or
        stake (runtime, GPUs on the node, GPU memory, speed, packages, requires), and how
        many each of these left out (counting each provider by its first failure)."""
        c, n = self.cols, self.cols.size
        checks: list[Check] = [
            ("offline", c.alive[:n], None),
            (
                f"no {req.runtime} runtime",
                (c.runtime_bits[:n] & RUNTIME_BITS[req.runtime]) != 0,
                None,
            ),
        ]
        if req.requires:
            fits, _ = self._fits_platform(req.requires, req.runtime)
            checks.append((f"does not meet requires: {req.requires.describe()}", fits, None))
        if req.gpus > 0:
            checks.append((f"fewer than {req.gpus} GPUs", c.gpu_count[:n] >= req.gpus, None))
            memory_ok = c.gpu_memory[:n] >= req.gpu_memory_bytes
            checks.append(("too little GPU memory", memory_ok, None))
        for dtype, minimum in req.min_tflops.items():
            column = c.tflops[:n, DTYPE_INDEX[dtype]]
            checks.append((f"below {minimum:g} {dtype} TFLOPS", column >= minimum, None))
        if req.packages:
            wanted = ", ".join(f"{name}{spec}" for name, spec in req.packages)
            checks.append((f"its Python lacks {wanted}", self._has_packages(req.packages), None))
        if req.input_bytes:
            checks.append(self._input_fits(req.input_bytes))
        mask = checks[0][1].copy()
        for _, passes, _ in checks[1:]:
            mask &= passes
        return int(mask.sum()), self._reasons(checks)

    def _input_fits(self, input_bytes: int) -> Check:
        """Per slot: the input limit its advert states (none stated: no limit) takes the
        job's ``input_bytes``; a failure names both."""
        limits = self.cols.max_input
        size = describe_size(input_bytes)

        def detail(slot: int) -> str:
            limit = describe_size(int(limits[slot]))
            return f"input {size} exceeds its {limit} input limit"

        fits: np.ndarray = limits[: self.cols.size] >= input_bytes
        return (f"input {size} exceeds its input limit", fits, detail)

    def _has_packages(self, packages: tuple[tuple[str, str], ...]) -> np.ndarray:
        """Per slot: its torch runtime offers ``packages``. Judged once per distinct
        environment (providers built alike share one), then looked up per slot."""
        c, n = self.cols, self.cols.size
        stale = self._environments_epoch != c.environments_epoch
        if stale or len(self._environments_ok) >= MAX_PACKAGE_SETS:
            self._environments_ok.clear()  # codes renumbered, or too many requirement sets
            self._environments_epoch = c.environments_epoch
        known = self._environments_ok.setdefault(packages, [])
        required = dict(packages)
        for environment in c.environments[len(known) :]:
            known.append(not unmet(required, environment))
        ok = np.array([*known, False], dtype=bool)  # a slot without one (-1) reads False
        result: np.ndarray = ok[c.environment[:n]]
        return result

    def _fits_platform(self, requires: compat.Requires, runtime: str) -> tuple[np.ndarray, Detail]:
        """Per slot: its GPU platform meets ``requires`` for a ``runtime`` job, and the
        detail of a failure. Judged once per distinct platform, then looked up per slot."""
        c, n = self.cols, self.cols.size
        table = c.platform_table
        if self._platforms_epoch != table.epoch or len(self._platforms_unmet) >= MAX_PACKAGE_SETS:
            self._platforms_unmet.clear()
            self._platforms_epoch = table.epoch
        known = self._platforms_unmet.setdefault((requires, runtime), [])
        for platform in table.values[len(known) :]:
            known.append(tuple(compat.unmet(requires, platform, runtime)))
        ok = np.array([not u for u in known] + [False], dtype=bool)  # -1 (none) reads False
        result: np.ndarray = ok[c.platform[:n]]
        codes = c.platform

        def detail(slot: int) -> str:
            code = int(codes[slot])
            failed = known[code] if 0 <= code < len(known) else ()
            return "; ".join(failed) or "does not meet requires"

        return result, detail

    def _checkable(self) -> np.ndarray:
        """Per slot: another live operator shares its fingerprint (a spot check can be
        seated behind it on an exact job)."""
        c, n = self.cols, self.cols.size
        live = np.flatnonzero(c.alive[:n])
        operators = np.where(c.group[live] != 0, c.group[live], -(live.astype(np.int64) + 1))
        pairs = np.unique(np.stack([c.fingerprint[live].astype(np.int64), operators]), axis=1)
        fingerprints, counts = np.unique(pairs[0], return_counts=True)
        shared = fingerprints[counts >= 2]
        return np.isin(c.fingerprint[:n], shared)

    def match(self, req: Requirements) -> Match:
        """Choose ``req.count`` providers or raise :class:`NoCandidates`."""
        c = self.cols
        checks = self._filters(req)
        mask = checks[0][1].copy()
        for _, passes, _ in checks[1:]:
            mask &= passes
        ranking = self.ranking(primary_dtype(req), cpu=req.gpus == 0)
        scores = ranking.scores
        eligible = int(np.count_nonzero(mask))
        shortlist = ranking.first(mask, SHORTLIST)
        picked = self._pick(ranking, mask, eligible, shortlist, req)
        # ``mask`` lies within ``alive`` (its first filter): the live ones it left out.
        rejected = ranking.first(mask ^ c.alive[: c.size], EXPLAIN_FILTERED)
        if len(picked) < req.count:
            filtered = self._filtered(rejected.tolist(), scores, checks)
            raise NoCandidates(req.count, len(picked), self._reasons(checks), filtered)
        picked, explored = self._explore(ranking, mask, picked, req)
        choices = [self._choice(s, float(scores[s]), req, s == explored) for s in picked]
        shown = EXPLAIN_LOSERS + len(picked)
        top = shortlist if shown <= len(shortlist) else ranking.first(mask, shown)
        candidates = self._explain(
            eligible, top[:shown].tolist(), scores, picked, explored, rejected.tolist(), checks
        )
        return Match(choices, candidates, eligible, {})

    @staticmethod
    def _reasons(checks: list[Check]) -> dict[str, int]:
        """How many providers each filter removed (counting each by its first failure)."""
        mask = checks[0][1].copy()
        counts: dict[str, int] = {}
        for reason, passes, _ in checks[1:]:
            failing = int((mask & ~passes).sum())
            if failing:
                counts[reason] = failing
            mask &= passes
        return counts

    def _operator(self, slot: int) -> int:
        group = int(self.cols.group[slot])
        return group if group != 0 else -(slot + 1)

    def _pick(
        self,
        ranking: Ranking,
        mask: np.ndarray,
        eligible: int,
        shortlist: np.ndarray,
        req: Requirements,
    ) -> list[int]:
        """Best slots with distinct operators (one fingerprint for exact multi-provider jobs):
        from the ``shortlist`` (the best eligible, in order) when it has them, else from all
        ``eligible`` (``mask``)."""
        one_fingerprint = req.exact and (req.count > 1 or req.fingerprint is not None)
        picked = self._greedy(shortlist.tolist(), req, one_fingerprint)
        if len(picked) < req.count and eligible > len(shortlist):
            ranked = ranking.first(mask, eligible)
            if one_fingerprint:
                picked = self._pick_per_fingerprint(ranked, req)
            else:
                picked = self._greedy(ranked.tolist(), req, one_fingerprint)
        return picked

    def _pick_per_fingerprint(self, eligible: np.ndarray, req: Requirements) -> list[int]:
        """Greedy within each fingerprint's best few; the group whose last seat ranks best
        wins. ``eligible`` is ordered best first."""
        fps = self.cols.fingerprint[eligible]
        by_fp = np.argsort(fps, kind="stable")  # keeps score order inside each fingerprint
        _, starts = np.unique(fps[by_fp], return_index=True)
        ends = [*starts[1:].tolist(), len(by_fp)]
        best: tuple[int, list[int]] | None = None
        for start, end in zip(starts.tolist(), ends, strict=True):
            positions = by_fp[start : min(end, start + SHORTLIST)]
            slots = eligible[positions].tolist()
            picked = self._greedy(slots, req, False)
            if len(picked) == req.count:
                # Global rank of the group's last seat: lower means a cheaper full group.
                last = int(positions[slots.index(picked[-1])])
                if best is None or last < best[0]:
                    best = (last, picked)
        if best is None:
            return self._greedy(eligible.tolist(), req, True)
        return best[1]

    def _greedy(self, slots: list[int], req: Requirements, one_fingerprint: bool) -> list[int]:
        fingerprints = self.cols.fingerprint
        by_fingerprint: dict[int, tuple[list[int], set[int]]] = {}
        for slot in slots:
            key = int(fingerprints[slot]) if one_fingerprint else 0
            picked, operators = by_fingerprint.setdefault(key, ([], set()))
            operator = self._operator(slot)
            if operator in operators:
                continue
            picked.append(slot)
            operators.add(operator)
            if len(picked) == req.count:
                return picked
        if not by_fingerprint:
            return []
        return max(by_fingerprint.values(), key=lambda v: len(v[0]))[0]

    def _explore(
        self, ranking: Ranking, mask: np.ndarray, picked: list[int], req: Requirements
    ) -> tuple[list[int], int | None]:
        """With probability ``exploration_share``, give the last seat to a newcomer."""
        if self.exploration_share <= 0 or self.rng.random() >= self.exploration_share:
            return picked, None
        c = self.cols
        newcomers = ranking.first(mask & c.newcomer[: c.size], EXPLORE_POOL * 4).tolist()
        keep = picked[:-1]
        operators = {self._operator(s) for s in keep}
        fingerprint = int(c.fingerprint[picked[0]]) if keep else None
        options = [
            s
            for s in newcomers
            if s not in picked
            and self._operator(s) not in operators
            and (not req.exact or fingerprint is None or int(c.fingerprint[s]) == fingerprint)
        ][:EXPLORE_POOL]
        if not options:
            return picked, None
        pick = self.rng.choice(options)
        return [*keep, pick], pick

    def _choice(self, slot: int, score: float, req: Requirements, explored: bool) -> Choice:
        c = self.cols
        rate = seat_rate(c.rates[slot], c.cpu_rates[slot], req)
        return Choice(
            address=c.addresses[slot],
            peer_id=c.peer_ids[slot],
            multiaddrs=c.multiaddrs[slot],
            price=exact_price(rate, req),
            rate_per_hour=rate,
            score=score,
            fingerprint=c.fingerprint_names[int(c.fingerprint[slot])],
            explored=explored,
        )

    def _explain(
        self,
        total: int,
        top: list[int],
        scores: np.ndarray,
        picked: list[int],
        explored: int | None,
        rejected: list[int],
        checks: list[Check],
    ) -> list[Candidate]:
        """Why each of ``picked`` won, why the best others (``top``, of ``total`` eligible)
        and a sample of the filtered (``rejected``) lost."""
        c = self.cols
        addresses, peer_ids = c.addresses, c.peer_ids
        rank = {slot: i + 1 for i, slot in enumerate(top)}
        at = np.asarray(top, dtype=np.int64)
        top_scores: list[float] = scores[at].tolist()
        top_groups: list[int] = c.group[at].tolist()
        out: list[Candidate] = []
        for slot in picked:
            if slot == explored:
                why = "chosen: exploration seat for a provider without a record"
            else:
                place = rank.get(slot, f">{len(top)}")
                why = f"chosen: rank {place} of {total} eligible by score"
            out.append(Candidate(addresses[slot], peer_ids[slot], float(scores[slot]), True, why))
        chosen = set(picked)
        operators = {self._operator(s) for s in picked}
        for i, slot in enumerate(top):
            if slot in chosen:
                continue
            group = top_groups[i]
            if (group if group != 0 else -(slot + 1)) in operators:
                why = "eligible, but its operator already has a seat"
            else:
                why = f"eligible, outscored (rank {i + 1} of {total})"
            out.append(Candidate(addresses[slot], peer_ids[slot], top_scores[i], False, why))
        out += self._filtered(rejected, scores, checks)
        return out

    def _filtered(
        self, rejected: list[int], scores: np.ndarray, checks: list[Check]
    ) -> list[Candidate]:
        """Why each of ``rejected`` was filtered out: its first failed filter, in its own
        terms where the filter can say (``driver 535.104 < 550.54``)."""
        if not rejected:
            return []
        addresses, peer_ids = self.cols.addresses, self.cols.peer_ids
        rejected_scores: list[float] = scores[np.asarray(rejected, dtype=np.int64)].tolist()
        out: list[Candidate] = []
        for j, slot in enumerate(rejected):
            # A few slots against a dozen filters: per-slot lookups beat gathering each filter.
            reason = "filtered"
            for name, passes, detail in checks:
                if not passes[slot]:
                    reason = name if detail is None else detail(slot)
                    break
            why = f"filtered: {reason}"
            out.append(Candidate(addresses[slot], peer_ids[slot], rejected_scores[j], False, why))
        return out
