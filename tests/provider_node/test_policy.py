"""The consent policy: each rule refuses the offer it should, and only that one.

Every test starts from one offer that passes every rule (``test_the_baseline_offer_passes``)
and breaks exactly one thing, so a rule that stopped checking turns its test red.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from contracts.models import JobStatus, Seat
from protocol.errors import ConfigError
from protocol.ids import Address, JobId, Wei, to_wei
from protocol.messages import JobOffer
from provider_node.policy import (
    MAX_OFFER_EXPIRY_S,
    AcceptBook,
    Accepted,
    ConsentPolicy,
    OfferFacts,
    consent_policy,
    decline_reason,
)
from provider_node.settings import DEFAULT_MAX_LOCK_S, load_settings
from tests.provider_node.chainworld import CAP, FACTOR, PRICE, RATE, SPEC_CID, ChainWorld

OTHER_CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


@pytest.fixture(scope="module")
def cw() -> ChainWorld:
    return ChainWorld.create("policy")


@pytest.fixture(scope="module")
def job_id(cw: ChainWorld) -> JobId:
    return cw.create_job()


def policy(cw: ChainWorld, **changes: Any) -> ConsentPolicy:
    base = ConsentPolicy(
        coordinators=frozenset({Address(cw.coordinator.address)}),
        min_rate_per_gpu_hour=Wei(RATE // 2),
        min_rate_per_cpu_hour=Wei(RATE // 2),
        max_lock_s=DEFAULT_MAX_LOCK_S,
    )
    return dataclasses.replace(base, **changes)


def offer(cw: ChainWorld, job_id: JobId, **changes: Any) -> JobOffer:
    fields: dict[str, Any] = {
        "job_id": job_id,
        "provider": cw.provider.address,
        "coordinator": cw.coordinator.address,
        "seat": 0,
        "price": PRICE,
        "rate_per_hour": RATE,
        "expiry": cw.world.time + 60,
        "spec_cid": SPEC_CID,
        "gpus": 1,
    }
    fields.update(changes)
    return JobOffer(**fields)


def facts(cw: ChainWorld, job_id: JobId, pending: int = 0, **job_changes: Any) -> OfferFacts:
    chain = cw.chain("provider")
    job = chain.get_job(job_id)
    if job_changes:
        job = dataclasses.replace(job, **job_changes)
    stake = chain.provider_info(cw.provider.address)
    return OfferFacts(cw.world.time, job, stake, FACTOR, pending)


def test_the_baseline_offer_passes(cw: ChainWorld, job_id: JobId) -> None:
    assert decline_reason(policy(cw), offer(cw, job_id), facts(cw, job_id)) is None


def test_coordinator_outside_the_allow_list(cw: ChainWorld, job_id: JobId) -> None:
    stranger = Address(cw.ids["other"].address)
    reason = decline_reason(
        policy(cw, coordinators=frozenset({stranger})), offer(cw, job_id), facts(cw, job_id)
    )
    assert reason is not None and "PROVIDER_COORDINATORS" in reason


def test_coordinator_other_than_the_chain_names(cw: ChainWorld, job_id: JobId) -> None:
    other = Address(cw.ids["other"].address)
    both = policy(cw, coordinators=frozenset({other, Address(cw.coordinator.address)}))
    reason = decline_reason(both, offer(cw, job_id, coordinator=other), facts(cw, job_id))
    assert reason is not None and "as this job's coordinator" in reason


def test_job_not_open(cw: ChainWorld, job_id: JobId) -> None:
    reason = decline_reason(
        policy(cw), offer(cw, job_id), facts(cw, job_id, status=JobStatus.SETTLED)
    )
    assert reason == "the job is settled on chain"


def test_spec_other_than_the_chain_names(cw: ChainWorld, job_id: JobId) -> None:
    reason = decline_reason(policy(cw), offer(cw, job_id, spec_cid=OTHER_CID), facts(cw, job_id))
    assert reason is not None and "not the job's spec" in reason


@pytest.mark.parametrize("seat", [3, 7])
def test_seat_beyond_the_job(cw: ChainWorld, job_id: JobId, seat: int) -> None:
    reason = decline_reason(policy(cw), offer(cw, job_id, seat=seat), facts(cw, job_id))
    assert reason is not None and f"seat {seat} is not free" in reason


def _seat(provider: str) -> Seat:
    return Seat(Address(provider), PRICE, RATE, 0)


def test_seat_taken(cw: ChainWorld, job_id: JobId) -> None:
    taken = facts(cw, job_id, seats=(_seat(cw.ids["other"].address),))
    reason = decline_reason(policy(cw), offer(cw, job_id, seat=0), taken)
    assert reason is not None and "seat 0 is not free" in reason
    assert decline_reason(policy(cw), offer(cw, job_id, seat=1), taken) is None


def test_provider_seated_already(cw: ChainWorld, job_id: JobId) -> None:
    ours = facts(cw, job_id, seats=(_seat(cw.provider.address),))
    reason = decline_reason(policy(cw), offer(cw, job_id, seat=1), ours)
    assert reason == "the chain seats this provider in this job already"


def test_price_above_the_cap(cw: ChainWorld, job_id: JobId) -> None:
    reason = decline_reason(policy(cw), offer(cw, job_id, price=CAP + 1), facts(cw, job_id))
    assert reason is not None and "above the job's cap" in reason
    assert decline_reason(policy(cw), offer(cw, job_id, price=CAP), facts(cw, job_id)) is None


def test_rate_below_the_minimum_per_gpu(cw: ChainWorld, job_id: JobId) -> None:
    strict = policy(cw, min_rate_per_gpu_hour=Wei(RATE // 2))
    assert decline_reason(strict, offer(cw, job_id, gpus=2), facts(cw, job_id)) is None
    reason = decline_reason(strict, offer(cw, job_id, gpus=3), facts(cw, job_id))
    assert reason is not None and "below this provider's minimum" in reason
    assert (
        decline_reason(
            strict, offer(cw, job_id, gpus=0, rate_per_hour=RATE // 2), facts(cw, job_id)
        )
        is None
    )


def test_a_cpu_seat_is_held_to_the_cpu_hour_minimum(cw: ChainWorld, job_id: JobId) -> None:
    # GPU-hours cheap, CPU-hours dear: a CPU seat at the GPU minimum is refused.
    strict = policy(cw, min_rate_per_gpu_hour=Wei(RATE // 4), min_rate_per_cpu_hour=Wei(RATE))
    cpu_seat = offer(cw, job_id, gpus=0, rate_per_hour=RATE // 2)
    reason = decline_reason(strict, cpu_seat, facts(cw, job_id))
    assert reason is not None and f"minimum {RATE} for a CPU seat" in reason
    assert decline_reason(strict, offer(cw, job_id, gpus=2), facts(cw, job_id)) is None
    at_minimum = offer(cw, job_id, gpus=0, rate_per_hour=RATE)
    assert decline_reason(strict, at_minimum, facts(cw, job_id)) is None


def test_expired_offer(cw: ChainWorld, job_id: JobId) -> None:
    now = cw.world.time
    reason = decline_reason(policy(cw), offer(cw, job_id, expiry=now), facts(cw, job_id))
    assert reason is not None and "expired" in reason


def test_expiry_too_far_ahead(cw: ChainWorld, job_id: JobId) -> None:
    far = cw.world.time + MAX_OFFER_EXPIRY_S + 1
    reason = decline_reason(policy(cw), offer(cw, job_id, expiry=far), facts(cw, job_id))
    assert reason is not None and f"{MAX_OFFER_EXPIRY_S} s ahead" in reason


def test_lock_too_long(cw: ChainWorld, job_id: JobId) -> None:
    settle_in = cw.chain("provider").job_terms(job_id).settle_deadline - cw.world.time
    short = policy(cw, max_lock_s=settle_in - 1)
    reason = decline_reason(short, offer(cw, job_id), facts(cw, job_id))
    assert reason is not None and "stay locked" in reason
    exact = policy(cw, max_lock_s=settle_in)
    assert decline_reason(exact, offer(cw, job_id), facts(cw, job_id)) is None


def test_locked_stake_cap(cw: ChainWorld, job_id: JobId) -> None:
    lock = FACTOR * PRICE
    tight = policy(cw, max_locked_stake=Wei(lock - 1))
    reason = decline_reason(tight, offer(cw, job_id), facts(cw, job_id))
    assert reason is not None and "locked stake" in reason
    fits = policy(cw, max_locked_stake=Wei(lock))
    assert decline_reason(fits, offer(cw, job_id), facts(cw, job_id)) is None
    # Accepts signed and not yet locked on chain count too.
    reason = decline_reason(fits, offer(cw, job_id), facts(cw, job_id, pending=1))
    assert reason is not None and "locked stake" in reason


def test_default_cap_is_all_stake(cw: ChainWorld, job_id: JobId) -> None:
    stake = cw.chain("provider").provider_info(cw.provider.address).stake
    room = stake - FACTOR * PRICE  # pending accepts that leave exactly one lock free
    assert decline_reason(policy(cw), offer(cw, job_id), facts(cw, job_id, pending=room)) is None
    reason = decline_reason(policy(cw), offer(cw, job_id), facts(cw, job_id, pending=room + 1))
    assert reason is not None and "locked stake" in reason


def test_accept_book_reserves_and_lapses() -> None:
    book = AcceptBook(max_entries=2, grace_s=10)
    a = Accepted(JobId(b"\1" * 32), 0, Wei(5), Wei(1), expiry=100, lock=25, terms_hash=b"")
    b = dataclasses.replace(a, job_id=JobId(b"\2" * 32), lock=30)
    book.add(a)
    book.add(b)
    assert book.full(JobId(b"\3" * 32)) and not book.full(a.job_id)
    assert book.pending_lock() == 55 and book.pending_lock(excluding=a.job_id) == 30
    assert book.reserved() == 2 and book.reserved(excluding=b.job_id) == 1
    book.prune(110)
    assert len(book) == 2
    book.prune(111)
    assert len(book) == 0


def _settings(tmp_path: Path, **kw: Any) -> Any:
    unused = "0x" + "11" * 20
    base: dict[str, Any] = {
        "rpc_url": "http://x",
        "market_address": unused,
        "registry_address": unused,
        "token_address": unused,
        "keystore": tmp_path / "k.json",
        "ipfs_api": "http://y",
        "work_dir": tmp_path,
    }
    return load_settings(**{**base, **kw})


def test_policy_defaults_come_from_the_settings(tmp_path: Path) -> None:
    cw = ChainWorld.create("policy-settings")
    addr = f"/ip4/127.0.0.1/tcp/4001/p2p/{cw.coordinator.peer_id}"
    p = consent_policy(_settings(tmp_path, coordinator_multiaddr=addr, price_per_gpu_hour="2.5"))
    assert p.coordinators == {cw.coordinator.address}
    assert p.min_rate_per_gpu_hour == to_wei("2.5")
    assert p.min_rate_per_cpu_hour == to_wei("2.5")  # no CPU-hour price: the GPU-hour one
    both = _settings(tmp_path, price_per_gpu_hour="2.5", price_per_cpu_hour="0.25")
    assert consent_policy(both).min_rate_per_cpu_hour == to_wei("0.25")
    assert consent_policy(both).min_rate(0) == to_wei("0.25")
    assert consent_policy(both).min_rate(2) == to_wei("5")
    assert p.max_lock_s == 7 * 24 * 3600 and p.max_locked_stake is None
    assert p.locked_cap(123) == 123
    view = p.view(to_wei("100"))
    assert view["max_locked_stake"] == "100.000000" and view["max_locked_stake_is_all_stake"]
    assert consent_policy(_settings(tmp_path)).coordinators == frozenset()


def test_policy_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = "0x" + "ab" * 20, "0x" + "cd" * 20
    monkeypatch.setenv("PROVIDER_COORDINATORS", f"{a}, {b}")
    monkeypatch.setenv("PROVIDER_MIN_RATE_PER_GPU_HOUR", "7")
    monkeypatch.setenv("PROVIDER_MIN_RATE_PER_CPU_HOUR", "3")
    monkeypatch.setenv("PROVIDER_MAX_LOCK_S", "3600")
    monkeypatch.setenv("PROVIDER_MAX_LOCKED_STAKE", "50")
    p = consent_policy(_settings(tmp_path))
    assert {x.lower() for x in p.coordinators} == {a, b}
    assert (p.min_rate_per_gpu_hour, p.max_lock_s, p.max_locked_stake) == (7, 3600, 50)
    assert p.min_rate_per_cpu_hour == 3
    assert p.locked_cap(10) == 10 and p.locked_cap(100) == 50
    monkeypatch.setenv("PROVIDER_COORDINATORS", "0x12")
    with pytest.raises(ConfigError, match="PROVIDER_COORDINATORS"):
        _settings(tmp_path)


def test_an_idle_chains_old_block_time_does_not_make_a_fresh_expiry_too_far(
    cw: ChainWorld, job_id: JobId
) -> None:
    """On an idle devnet the last block can be minutes old: an expiry 5 minutes after the
    real time is fine, but it lies more than 5 minutes after the old block time."""
    late = cw.world.time + 100  # this machine's clock, ahead of the last block
    fresh = offer(cw, job_id, expiry=late + MAX_OFFER_EXPIRY_S - 10)
    assert decline_reason(policy(cw), fresh, facts(cw, job_id)) is not None  # block time only
    idle = dataclasses.replace(facts(cw, job_id), latest=late)
    assert decline_reason(policy(cw), fresh, idle) is None
    too_far = offer(cw, job_id, expiry=late + MAX_OFFER_EXPIRY_S + 100)
    reason = decline_reason(policy(cw), too_far, idle)
    assert reason is not None and "more than" in reason
    # expired is judged by block time, which is what the contract's assign compares
    assert decline_reason(policy(cw), offer(cw, job_id, expiry=cw.world.time), idle) is not None
