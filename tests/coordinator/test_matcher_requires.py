"""``resources.requires`` in the matcher: filtered per GPU platform, explained per provider."""

from __future__ import annotations

import random
from typing import Any

import pytest

from coordinator.errors import NoCandidates
from coordinator.matching.columns import ProviderColumns
from coordinator.matching.matcher import Matcher
from coordinator.matching.requirements import Requirements, parse_spec, requirements_for
from protocol.compat import Platform, Requires
from tests.coordinator.factories import UNIT, offer

H100 = Platform("nvidia", ("NVIDIA H100 80GB HBM3",), "9.0", "550.54.15", "12.4", "12.6")
A10 = Platform("nvidia", ("NVIDIA A10",), "8.6", "535.104.05", "12.1", "12.2")
MI300 = Platform("amd", ("AMD Instinct MI300X",), None, "6.3.6", None, None)


def book(*platforms: Platform, **kw: Any) -> ProviderColumns:
    cols = ProviderColumns(capacity=2)
    for i, platform in enumerate(platforms):
        # The cheapest is the last: the filter, not the price, decides who is chosen.
        rate = (len(platforms) - i) * UNIT
        cols.upsert(offer(i, platform=platform, rate_per_gpu_hour=rate, **kw))
        cols.set_stake(offer(i).address, 1000 * UNIT, i + 1)
        cols.set_reputation(offer(i).address, 0.9, False)
    return cols


def req(**kw: Any) -> Requirements:
    base: dict[str, Any] = {"count": 1, "price_cap": 100 * UNIT, "duration_s": 3600}
    base.update(kw)
    return Requirements(**base)


def matcher(cols: ProviderColumns) -> Matcher:
    return Matcher(cols, exploration_share=0.0, rng=random.Random(1))


def test_requires_filters_and_each_loser_says_what_it_lacks() -> None:
    cols = book(H100, A10, MI300)
    m = matcher(cols).match(req(requires=Requires(vendor="nvidia", min_driver="550.54")))
    assert [c.address for c in m.chosen] == [offer(0).address]
    reasons = {c.address: c.reason for c in m.candidates if not c.chosen}
    assert reasons == {
        offer(1).address: "filtered: driver 535.104.05 < 550.54",
        offer(2).address: "filtered: vendor amd is not nvidia; driver 6.3.6 < 550.54",
    }
    # Without a requirement the cheapest (the AMD one) wins: the filter made the difference.
    assert matcher(cols).match(req()).chosen[0].address == offer(2).address


def test_min_cuda_reads_torch_for_torch_jobs_and_the_driver_for_containers() -> None:
    cols = book(H100, A10, runtimes=("torch", "container"))
    wants = Requires(vendor="nvidia", min_cuda="12.2")
    torch = matcher(cols).match(req(requires=wants, runtime="torch"))
    assert [c.address for c in torch.chosen] == [offer(0).address]
    loser = next(c for c in torch.candidates if not c.chosen)
    assert loser.reason == "filtered: CUDA of its torch 12.1 < 12.2"
    container = matcher(cols).match(req(requires=wants, runtime="container"))
    assert [c.address for c in container.chosen] == [offer(1).address]  # its driver has 12.2


def test_no_candidates_carries_each_providers_reason_and_the_counts() -> None:
    cols = book(H100, A10, MI300)
    asked = Requires(vendor="nvidia", gpu_model=("*B200*",), min_compute_capability="10.0")
    with pytest.raises(NoCandidates) as none:
        matcher(cols).match(req(requires=asked))
    key = "does not meet requires: vendor nvidia, GPU model *B200*, compute capability >= 10.0"
    assert none.value.reasons == {key: 3}
    reasons = {c.address: c.reason for c in none.value.filtered}
    assert reasons[offer(0).address] == (
        "filtered: GPU NVIDIA H100 80GB HBM3 does not match *B200*; compute capability 9.0 < 10.0"
    )
    assert reasons[offer(1).address].startswith("filtered: GPU NVIDIA A10 does not match")


def test_a_provider_that_upgrades_its_driver_counts_from_its_next_advert() -> None:
    cols = book(H100, A10)
    m = matcher(cols)
    wants = req(count=2, requires=Requires(vendor="nvidia", min_driver="550"), exact=False)
    with pytest.raises(NoCandidates):
        m.match(wants)
    upgraded = Platform("nvidia", ("NVIDIA A10",), "8.6", "560.35.03", "12.1", "12.6")
    cols.upsert(offer(1, platform=upgraded, rate_per_gpu_hour=UNIT))
    assert {c.address for c in m.match(wants).chosen} == {offer(0).address, offer(1).address}
    assert len(cols.platforms) == 3  # platforms are judged once each, not per provider


def test_capable_counts_who_could_ever_run_it_whatever_load_or_price() -> None:
    cols = book(H100, A10, MI300)
    for i in range(3):
        cols.mark_full(offer(i).address, 1e12)  # all busy: matching now finds nobody
    m = matcher(cols)
    assert m.capable(req(requires=Requires(vendor="nvidia"))) == (
        2,
        {"does not meet requires: vendor nvidia": 1},
    )
    assert m.capable(req(requires=Requires(min_driver="999"), price_cap=1))[0] == 0
    assert m.capable(req(gpus=2)) == (0, {"fewer than 2 GPUs": 3})


IMAGE = "img@sha256:" + "a" * 64


def test_requirements_take_requires_from_the_spec() -> None:
    spec = parse_spec(
        f"name: x\nruntime: {{kind: container, image: {IMAGE}, command: [run]}}\n"
        'resources: {gpus: 1, requires: {gpu_model: "*H100*", min_driver: "550.54"}}\n'
        "price: {max_per_provider: 1}\n"
    )
    r = requirements_for(spec, count=1, price_cap=UNIT, exact=True)
    assert r.requires == Requires(vendor="nvidia", gpu_model=("*H100*",), min_driver="550.54")
    assert r.to_json()["requires"]["min_driver"] == "550.54"
    plain = parse_spec(
        "name: x\nruntime: {kind: torch, entrypoint: a.py}\nprice: {max_per_provider: 1}\n"
    )
    assert not requirements_for(plain, count=1, price_cap=UNIT, exact=True).requires
