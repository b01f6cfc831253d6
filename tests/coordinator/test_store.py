"""The store against SQLite and (where one can start) a real PostgreSQL server."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from coordinator.errors import InvalidTransition, UnknownJob
from coordinator.store import AsyncStore, ProviderSlot, Store
from protocol.ids import Address, Wei
from protocol.lifecycle import JobState, Outcome, SeatState
from tests.coordinator.factories import job_record


@pytest.fixture
def store(db_url: str):
    s = Store(db_url)
    try:
        yield s
    finally:
        s.close()


def test_migrations_create_every_table_and_rerun_is_a_no_op(db_url: str) -> None:
    Store(db_url).close()
    store = Store(db_url)  # second open: upgrade to head again must not fail
    names = set(inspect(store.engine).get_table_names())
    store.close()
    assert {
        "jobs",
        "job_providers",
        "job_declines",
        "job_events",
        "job_logs",
        "cursors",
        "reputations",
    } <= names
    assert "alembic_version" in names


def test_add_job_is_idempotent_and_keeps_uint64_amounts(store: Store) -> None:
    job = job_record(1)
    _, new = store.add_job(job)
    again, new_again = store.add_job(job_record(1, spec_cid="other"))
    assert new and not new_again
    assert again.spec_cid == job.spec_cid
    assert store.get_job(job.job_id).price_cap == 2**64 - 1
    assert [e.state for e in store.events(job.job_id)] == [JobState.CREATED]


def test_transition_persists_state_and_event_together(store: Store) -> None:
    job, _ = store.add_job(job_record(2))
    store.transition(job.job_id, JobState.ASSIGNED, {"tx": "0xabc"})
    moved = store.transition(job.job_id, JobState.RUNNING, result_cid=None)
    assert moved.state is JobState.RUNNING
    events = store.events(job.job_id)
    assert [e.state for e in events] == [JobState.CREATED, JobState.ASSIGNED, JobState.RUNNING]
    assert events[1].detail == {"tx": "0xabc"}
    assert store.events(job.job_id, after=events[1].id)[0].state is JobState.RUNNING


def test_forbidden_transition_changes_nothing(store: Store) -> None:
    job, _ = store.add_job(job_record(3))
    with pytest.raises(InvalidTransition):
        store.transition(job.job_id, JobState.REVEALING)
    with pytest.raises(InvalidTransition):
        store.transition(job.job_id, JobState.ASSIGNED, expect=frozenset({JobState.RUNNING}))
    assert store.get_job(job.job_id).state is JobState.CREATED
    assert len(store.events(job.job_id)) == 1


def test_final_states_stay_final(store: Store) -> None:
    job, _ = store.add_job(job_record(4))
    store.transition(job.job_id, JobState.CANCELLED)
    with pytest.raises(InvalidTransition):
        store.transition(job.job_id, JobState.SETTLED)


def test_unknown_job_raises_not_found(store: Store) -> None:
    with pytest.raises(UnknownJob):
        store.get_job("0x" + "00" * 32)
    assert store.find_job("0x" + "00" * 32) is None


def test_slots_round_trip_and_update(store: Store) -> None:
    job, _ = store.add_job(job_record(5))
    slots = [
        ProviderSlot(
            job.job_id,
            i,
            Address(f"0x{i + 1:040x}"),
            f"peer{i}",
            Wei(5 * 10**18),
            SeatState.ASSIGNED,
            0.0,
            ("/ip4/1.2.3.4/tcp/1",),
            rate_per_hour=Wei(2**64 - 1),
            assigned_at=1_700_000_000,
        )
        for i in range(2)
    ]
    store.put_slots(slots)
    store.update_slot(job.job_id, 1, state=SeatState.COMMITTED, commit_hash="0x" + "ab" * 32)
    got = store.slots(job.job_id)
    assert [s.state for s in got] == [SeatState.ASSIGNED, SeatState.COMMITTED]
    assert got[0].price == 5 * 10**18 and got[0].multiaddrs == ("/ip4/1.2.3.4/tcp/1",)
    assert got[0].rate_per_hour == 2**64 - 1 and got[0].assigned_at == 1_700_000_000
    # A late answer does not overwrite news: only_if guards the state it expects.
    kept = store.update_slot(
        job.job_id, 1, only_if=frozenset({SeatState.ASSIGNED}), state=SeatState.RUNNING
    )
    assert kept.state is SeatState.COMMITTED
    # Settled figures and typed outcomes survive the round trip.
    store.update_slot(job.job_id, 1, outcome=Outcome.PAID, pay=2**70, billed_ms=2**63)
    paid = store.slots(job.job_id)[1]
    assert (paid.outcome, paid.pay, paid.billed_ms) == (Outcome.PAID, 2**70, 2**63)


def test_the_seat_lifecycle_is_enforced(store: Store) -> None:
    job, _ = store.add_job(job_record(10))
    store.put_slots(
        [
            ProviderSlot(
                job.job_id, 0, Address("0x" + "aa" * 20), "p", Wei(1), SeatState.OFFERED, 0.0
            )
        ]
    )
    with pytest.raises(InvalidTransition):  # no commitment before the seat is on chain
        store.update_slot(job.job_id, 0, state=SeatState.COMMITTED)
    store.update_slot(job.job_id, 0, state=SeatState.ACCEPTED, accept_sig="0x01")
    store.update_slot(job.job_id, 0, state=SeatState.OFFERED, busy=True)  # consent lapsed
    assert store.slots(job.job_id)[0].busy


def test_a_declined_seat_is_given_back_and_recorded(store: Store) -> None:
    job, _ = store.add_job(job_record(11))
    a, b = Address("0x" + "aa" * 20), Address("0x" + "bb" * 20)
    store.put_slots(
        [
            ProviderSlot(job.job_id, 0, a, "p", Wei(1), SeatState.ASSIGNED, 0.0),
            ProviderSlot(job.job_id, 1, b, "q", Wei(1), SeatState.OFFERED, 0.0),
        ]
    )
    assert not store.decline_slot(job.job_id, 0, a, "on chain: never given back")
    assert not store.decline_slot(job.job_id, 1, a, "another provider's seat")
    assert store.decline_slot(job.job_id, 1, b, "declined: busy elsewhere")
    assert [s.idx for s in store.slots(job.job_id)] == [0]
    (decline,) = store.declines(job.job_id)
    assert (decline.seat, decline.address, decline.reason) == (1, b, "declined: busy elsewhere")


def test_listing_filters_and_counts(store: Store) -> None:
    store.add_job(job_record(6))
    store.add_job(job_record(7, requester="0x" + "33" * 20))
    store.transition("0x" + f"{7:064x}", JobState.CANCELLED)
    assert [j.job_id for j in store.list_jobs(requester="0x" + "33" * 20)] == ["0x" + f"{7:064x}"]
    assert len(store.list_jobs(state=JobState.CREATED)) == 1
    assert store.count_by_state() == {"created": 1, "cancelled": 1}
    assert [j.job_id for j in store.open_jobs()] == ["0x" + f"{6:064x}"]


def test_logs_cursor_explanation_reputation(store: Store) -> None:
    job, _ = store.add_job(job_record(8))
    assert store.add_log(job.job_id, "0x" + "aa" * 20, "hello")
    assert [line.text for line in store.logs(job.job_id)] == ["hello"]
    assert store.cursor("chain") is None
    store.set_cursor("chain", 10)
    store.set_cursor("chain", 12)
    assert store.cursor("chain") == 12
    store.save_explanation(job.job_id, [{"address": "x", "chosen": True}])
    store.save_explanation(job.job_id, [{"address": "y", "chosen": False}])
    assert store.explanation(job.job_id) == [{"address": "y", "chosen": False}]
    store.save_reputation("0x" + "aa" * 20, 3.0, 1.0, 5.0)
    assert store.reputations() == {"0x" + "aa" * 20: (3.0, 1.0, 5.0)}


async def test_async_store_runs_calls_in_threads(db_url: str) -> None:
    store = AsyncStore(Store(db_url))
    try:
        job, new = await store.add_job(job_record(9))
        assert new
        moved = await store.transition(job.job_id, JobState.ASSIGNED)
        assert moved.state is JobState.ASSIGNED
    finally:
        store.sync.close()


def test_v1_rows_survive_the_v2_migration(db_url: str) -> None:
    from sqlalchemy import text

    from coordinator.store.migrate import upgrade
    from coordinator.store.store import make_engine

    engine = make_engine(db_url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (job_id, state, requester, coordinator, spec_cid, redundancy,"
                " mode, price_cap, fee, assign_deadline, commit_deadline, settle_deadline,"
                " created_block, seed, created_at, updated_at) VALUES ('0x01', 'settled', 'r',"
                " 'c', 's', 2, 0, '5', '1', 10, 20, 30, 1, 7, 0.0, 0.0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO job_providers (job_id, idx, address, peer_id, multiaddrs, price,"
                " state, updated_at) VALUES ('0x01', 0, 'a', 'p', '[]', '5', 'revealed', 0.0)"
            )
        )
    engine.dispose()
    store = Store(db_url)
    try:
        job = store.get_job("0x01")
        assert (job.commit_window, job.timeout_ms, job.settle_attempts) == (0, 0, 0)
        (slot,) = store.slots("0x01")
        assert (slot.rate_per_hour, slot.busy, slot.onchain_votes) == (0, False, False)
    finally:
        store.close()


def test_the_lifecycle_migration_renames_states_and_adds_typed_sub_states(db_url: str) -> None:
    from sqlalchemy import text

    from coordinator.store.migrate import upgrade
    from coordinator.store.store import make_engine

    engine = make_engine(db_url)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (job_id, state, requester, coordinator, spec_cid, redundancy,"
                " mode, price_cap, fee, assign_deadline, settle_deadline,"
                " created_block, seed, created_at, updated_at) VALUES ('0x02', 'revealed', 'r',"
                " 'c', 's', 1, 0, '5', '1', 10, 30, 1, 7, 0.0, 0.0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO job_providers (job_id, idx, address, peer_id, multiaddrs, price,"
                " state, updated_at) VALUES ('0x02', 0, 'a', 'p', '[]', '5', 'planned', 0.0)"
            )
        )
    engine.dispose()
    store = Store(db_url)
    try:
        job = store.get_job("0x02")
        assert job.state is JobState.REVEALING
        assert (job.spot_checked, job.checker, job.waiting) == (None, None, None)
        (slot,) = store.slots("0x02")
        assert slot.state is SeatState.OFFERED
    finally:
        store.close()
