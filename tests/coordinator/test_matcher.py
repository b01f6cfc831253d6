"""The matcher on small hand-built books: filters, scores, operators, fingerprints, explanations."""

from __future__ import annotations

import random
from typing import Any

import pytest

from coordinator.errors import NoCandidates
from coordinator.matching.columns import ProviderColumns
from coordinator.matching.matcher import Matcher, exact_price, seat_rate
from coordinator.matching.requirements import (
    Requirements,
    parse_spec,
    requirements_for,
    tolerance_of,
)
from protocol.errors import SpecError
from tests.coordinator.factories import UNIT, offer


def book(*offers, stake: int = 1000 * UNIT) -> ProviderColumns:
    cols = ProviderColumns(capacity=2)  # small on purpose: growing must keep the data
    for o in offers:
        cols.upsert(o)
        cols.set_stake(o.address, stake, 0)
        cols.set_reputation(o.address, 0.9, False)
    return cols


def req(**kw: Any) -> Requirements:
    base: dict[str, Any] = {"count": 1, "price_cap": 100 * UNIT, "duration_s": 3600}
    base.update(kw)
    return Requirements(**base)


def matcher(cols: ProviderColumns, share: float = 0.0) -> Matcher:
    return Matcher(cols, exploration_share=share, rng=random.Random(1))


def test_cheapest_per_tflop_wins_and_price_is_rate_times_hours() -> None:
    cols = book(
        offer(0, rate_per_gpu_hour=2 * UNIT),
        offer(1, rate_per_gpu_hour=1 * UNIT),
        offer(2, rate_per_gpu_hour=1 * UNIT, tflops={"fp32": 60.0}),
    )
    m = matcher(cols).match(req(duration_s=1800))
    assert [c.address for c in m.chosen] == [offer(2).address]
    assert m.chosen[0].price == UNIT // 2
    two_gpus = req(gpus=2, duration_s=1200)
    assert exact_price(seat_rate(3 * UNIT, UNIT, two_gpus), two_gpus) == 2 * UNIT


def test_a_cpu_job_is_priced_ranked_and_filtered_on_the_cpu_hour_rate() -> None:
    cols = book(
        offer(0, rate_per_gpu_hour=UNIT, rate_per_cpu_hour=UNIT // 2),
        offer(1, rate_per_gpu_hour=2 * UNIT, rate_per_cpu_hour=UNIT // 4),
        offer(2, rate_per_gpu_hour=UNIT // 2, rate_per_cpu_hour=3 * UNIT),
    )
    gpu = matcher(cols).match(req(count=3, duration_s=1800))
    assert [c.address for c in gpu.chosen] == [offer(i).address for i in (2, 0, 1)]
    assert [c.rate_per_hour for c in gpu.chosen] == [UNIT // 2, UNIT, 2 * UNIT]
    cpu = matcher(cols).match(req(gpus=0, count=3, duration_s=1800))
    assert [c.address for c in cpu.chosen] == [offer(i).address for i in (1, 0, 2)]
    assert [c.rate_per_hour for c in cpu.chosen] == [UNIT // 4, UNIT // 2, 3 * UNIT]
    assert [c.price for c in cpu.chosen] == [UNIT // 8, UNIT // 4, 3 * UNIT // 2]
    # The cap reads the CPU-hour rate too: 1 token for half an hour leaves out the 3-token CPU.
    with pytest.raises(NoCandidates) as missing:
        matcher(cols).match(req(gpus=0, count=3, duration_s=1800, price_cap=UNIT))
    assert missing.value.reasons == {"price above the job's cap": 1}
    # A rate of zero still bills one unit (the contract refuses a zero rate).
    assert seat_rate(0, 0, req(gpus=0)) == 1


def test_filters_remove_what_does_not_fit() -> None:
    cols = book(
        offer(0, free_gpus=0),
        offer(1, gpu_memory_bytes=8 << 30),
        offer(2, tflops={"bf16": 10.0}),
        offer(3, runtimes=("container",)),
        offer(4, rate_per_gpu_hour=500 * UNIT),
        offer(5),
    )
    r = req(gpu_memory_bytes=16 << 30, min_tflops={"bf16": 50.0}, runtime="torch")
    m = matcher(cols).match(r)
    assert [c.address for c in m.chosen] == [offer(5).address]
    reasons = {c.address: c.reason for c in m.candidates if not c.chosen}
    assert "free GPUs" in reasons[offer(0).address]
    assert "GPU memory" in reasons[offer(1).address]
    assert "bf16 TFLOPS" in reasons[offer(2).address]
    assert "runtime" in reasons[offer(3).address]
    assert "cap" in reasons[offer(4).address]


def test_stake_must_cover_the_factor_times_price() -> None:
    cols = book(offer(0, rate_per_gpu_hour=10 * UNIT), stake=49 * UNIT)
    with pytest.raises(NoCandidates) as err:
        matcher(cols).match(req())
    assert err.value.reasons == {"not enough free stake": 1}
    cols.set_stake(offer(0).address, 50 * UNIT, 0)
    assert matcher(cols).match(req()).chosen[0].address == offer(0).address


def test_distinct_operators_and_exclusions() -> None:
    cols = book(offer(0), offer(1), offer(2, rate_per_gpu_hour=3 * UNIT))
    cols.set_stake(offer(0).address, 1000 * UNIT, 7)
    cols.set_stake(offer(1).address, 1000 * UNIT, 7)  # same operator group as offer 0
    m = matcher(cols).match(req(count=2))
    assert {c.address for c in m.chosen} == {offer(0).address, offer(2).address}
    m2 = matcher(cols).match(req(count=1, exclude_addresses=frozenset({offer(0).address})))
    assert m2.chosen[0].address == offer(1).address
    with pytest.raises(NoCandidates):
        matcher(cols).match(
            req(
                count=1,
                exclude_groups=frozenset({7}),
                exclude_addresses=frozenset({offer(2).address}),
            )
        )


def test_exact_jobs_pair_only_identical_fingerprints() -> None:
    cols = book(
        offer(0, fingerprint="H100/a"),
        offer(1, fingerprint="A10/b", rate_per_gpu_hour=UNIT // 2),
        offer(2, fingerprint="H100/a", rate_per_gpu_hour=2 * UNIT),
    )
    m = matcher(cols).match(req(count=2, exact=True))
    assert {c.fingerprint for c in m.chosen} == {"H100/a"}
    loose = matcher(cols).match(req(count=2, exact=False))
    assert offer(1).address in {c.address for c in loose.chosen}
    with pytest.raises(NoCandidates):
        matcher(book(offer(0, fingerprint="x"), offer(1, fingerprint="y"))).match(req(count=2))


def test_a_lone_exact_primary_must_share_its_fingerprint_with_another_operator() -> None:
    # The cheapest provider's fingerprint is unique: nobody could spot-check it.
    cols = book(
        offer(0, fingerprint="unique", rate_per_gpu_hour=UNIT // 4),
        offer(1, fingerprint="H100/a", rate_per_gpu_hour=UNIT),
        offer(2, fingerprint="H100/a", rate_per_gpu_hour=2 * UNIT),
        offer(3, fingerprint="twins", rate_per_gpu_hour=UNIT // 4),
        offer(4, fingerprint="twins", rate_per_gpu_hour=UNIT // 4),
    )
    cols.set_stake(offer(3).address, 1000 * UNIT, 9)
    cols.set_stake(offer(4).address, 1000 * UNIT, 9)  # one operator: cannot check itself
    m = matcher(cols).match(req(exact=True, checkable=True))
    assert m.chosen[0].address == offer(1).address
    assert matcher(cols).match(req(exact=True)).chosen[0].address in {
        offer(0).address,
        offer(3).address,
        offer(4).address,
    }
    # Tolerance jobs are replicated, not spot-checked on exact digests: any provider fits.
    assert matcher(cols).match(req(exact=False, checkable=True)).chosen[0].fingerprint != "H100/a"
    cols.remove(offer(2).address)  # the only other H100/a goes away
    with pytest.raises(NoCandidates, match="no other operator shares its fingerprint"):
        matcher(cols).match(req(exact=True, checkable=True))


def test_reputation_and_load_raise_the_score() -> None:
    cols = book(offer(0), offer(1))
    cols.set_reputation(offer(0).address, 0.1, False)
    assert matcher(cols).match(req()).chosen[0].address == offer(1).address
    cols.set_reputation(offer(0).address, 0.9, False)
    cols.upsert(offer(1, utilization=0.9))
    assert matcher(cols).match(req()).chosen[0].address == offer(0).address


def test_exploration_gives_newcomers_a_bounded_share() -> None:
    cols = book(*[offer(i) for i in range(10)], offer(10, rate_per_gpu_hour=3 * UNIT))
    cols.set_reputation(offer(10).address, 0.0, True)  # a newcomer, and dearer
    m = Matcher(cols, exploration_share=0.2, rng=random.Random(3))
    picks = [m.match(req()).chosen[0] for _ in range(500)]
    explored = [p for p in picks if p.explored]
    assert all(p.address == offer(10).address for p in explored)
    assert 0.1 < len(explored) / len(picks) < 0.3
    assert not any(p.explored for p in (matcher(cols).match(req()).chosen[0] for _ in range(50)))


def test_explanations_name_winners_and_losers() -> None:
    cols = book(offer(0), offer(1, rate_per_gpu_hour=2 * UNIT), offer(2, free_gpus=0))
    m = matcher(cols).match(req())
    by_address = {c.address: c for c in m.candidates}
    assert by_address[offer(0).address].chosen and "rank 1" in by_address[offer(0).address].reason
    assert "outscored" in by_address[offer(1).address].reason
    assert by_address[offer(2).address].reason.startswith("filtered")
    assert set(m.candidates[0].to_json()) == {"address", "peer_id", "score", "chosen", "reason"}


def test_an_outscored_provider_of_a_seated_operator_is_told_so() -> None:
    cols = book(offer(0), offer(1), offer(2, rate_per_gpu_hour=2 * UNIT))
    cols.set_stake(offer(0).address, 1000 * UNIT, 7)
    cols.set_stake(offer(1).address, 1000 * UNIT, 7)  # the same operator as offer(0)
    reasons = {c.address: c.reason for c in matcher(cols).match(req()).candidates}
    assert reasons[offer(0).address] == "chosen: rank 1 of 3 eligible by score"
    assert reasons[offer(1).address] == "eligible, but its operator already has a seat"
    assert reasons[offer(2).address] == "eligible, outscored (rank 3 of 3)"


def test_a_big_input_skips_providers_whose_stated_limit_is_smaller() -> None:
    cols = book(
        offer(0, max_input_bytes=1 << 30),  # cheapest, but takes 1 GiB of input at most
        offer(1, rate_per_gpu_hour=2 * UNIT),  # states no limit
        offer(2, rate_per_gpu_hour=3 * UNIT, max_input_bytes=2 << 30),
    )
    big = matcher(cols).match(req(input_bytes=3 << 29))  # 1.5 GiB
    assert [c.address for c in big.chosen] == [offer(1).address]
    reasons = {c.address: c.reason for c in big.candidates}
    assert reasons[offer(0).address] == "filtered: input 1.5GiB exceeds its 1GiB input limit"
    assert reasons[offer(2).address] == "eligible, outscored (rank 2 of 2)"
    assert big.eligible == 2
    # Within the limit (and with no size known) the cheapest wins again.
    for size in (1 << 30, 0):
        assert matcher(cols).match(req(input_bytes=size)).chosen[0].address == offer(0).address
    # Nobody takes 3 GiB but the one stating no limit; counted by reason when none is left.
    assert matcher(cols).match(req(input_bytes=3 << 30)).chosen[0].address == offer(1).address
    cols.remove(offer(1).address)
    with pytest.raises(NoCandidates) as caught:
        matcher(cols).match(req(input_bytes=3 << 30))
    assert caught.value.reasons == {"input 3GiB exceeds its input limit": 2}
    capable, left_out = matcher(cols).capable(req(input_bytes=3 << 30))
    assert capable == 0 and left_out == {"input 3GiB exceeds its input limit": 2}


def test_removed_providers_leave_and_slots_are_reused() -> None:
    cols = book(offer(0), offer(1))
    assert cols.remove(offer(0).address)
    assert matcher(cols).match(req()).chosen[0].address == offer(1).address
    cols.upsert(offer(5))
    cols.set_stake(offer(5).address, 1000 * UNIT, 0)
    assert cols.size == 2 and len(cols) == 2


def test_large_book_finds_a_fingerprint_group_outside_the_shortlist() -> None:
    offers = [offer(i, fingerprint=f"fp{i}") for i in range(200)]  # all distinct, cheap
    offers += [offer(1000 + i, fingerprint="shared", rate_per_gpu_hour=5 * UNIT) for i in range(3)]
    m = matcher(book(*offers)).match(req(count=3, exact=True))
    assert {c.fingerprint for c in m.chosen} == {"shared"}


def test_requirements_from_a_validated_spec() -> None:
    spec = parse_spec(
        """
name: t
runtime: {kind: torch, entrypoint: main.py}
resources: {gpus: 2, gpu_memory_gb: 16, min_tflops: {bf16: 100}}
verification: {redundancy: 2, compare: {tolerance: {rtol: 0.001}}}
price: {max_per_provider: "2.5"}
timeout: 10m
expected_duration: 5m
"""
    )
    r = requirements_for(spec, count=2, price_cap=5, exact=False)
    assert (r.gpus, r.gpu_memory_bytes, r.runtime, r.duration_s) == (2, 16 << 30, "torch", 300)
    assert r.min_tflops == {"bf16": 100.0}
    assert tolerance_of(spec) == (0.001, 0.0)
    with pytest.raises(SpecError):
        parse_spec(
            "name: t\nruntime: {kind: torch, entrypoint: main.sh}\nprice: {max_per_provider: 1}"
        )


def test_a_job_needing_packages_goes_only_where_the_python_has_them() -> None:
    old = {"torch": "2.13.0+cpu", "numpy": "1.26.4"}
    new = {"torch": "2.13.0+cpu", "numpy": "2.1.0", "transformers": "4.46.0"}
    cols = book(
        offer(0, packages=old, rate_per_gpu_hour=UNIT // 2),
        offer(1, packages=new),
        offer(2, packages=new, rate_per_gpu_hour=2 * UNIT),
        offer(3, rate_per_gpu_hour=UNIT // 4),  # a provider that lists no packages
    )
    m = matcher(cols)
    needs = (("numpy", ">=2"), ("transformers", ""))
    picked = m.match(req(count=2, packages=needs, exact=False))
    assert [c.address for c in picked.chosen] == [offer(1).address, offer(2).address]
    lacking = "its Python lacks numpy>=2, transformers"
    reasons = {c.address: c.reason for c in picked.candidates if not c.chosen}
    assert reasons == {
        offer(3).address: f"filtered: {lacking}",
        offer(0).address: f"filtered: {lacking}",
    }
    with pytest.raises(NoCandidates) as none:
        m.match(req(count=3, packages=needs, exact=False))
    assert none.value.reasons == {lacking: 2}
    # A provider that installs them is eligible from its next advert on.
    cols.upsert(offer(0, packages=new, rate_per_gpu_hour=UNIT // 2))
    again = m.match(req(count=3, packages=needs, exact=False))
    assert {c.address for c in again.chosen} == {offer(i).address for i in (0, 1, 2)}
    assert len(cols.environments) == 3  # providers built alike share one environment
    assert m.match(req(count=1)).chosen[0].address == offer(3).address  # no needs: cheapest


def test_requirements_take_the_packages_of_a_torch_spec() -> None:
    spec = parse_spec(
        "name: x\nruntime: {kind: torch, entrypoint: a.py, packages: {numpy: '>=2', tqdm: ''}}\n"
        "price: {max_per_provider: 1}\n"
    )
    r = requirements_for(spec, count=1, price_cap=UNIT, exact=True)
    assert r.packages == (("numpy", ">=2"), ("tqdm", ""))
    assert r.to_json()["packages"] == {"numpy": ">=2", "tqdm": ""}
