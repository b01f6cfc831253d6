"""Table definitions (SQLAlchemy Core). Amounts are decimal text: uint64 does not fit BIGINT."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(66), primary_key=True),
    Column("state", String(16), nullable=False, index=True),
    Column("requester", String(42), nullable=False, index=True),
    Column("coordinator", String(42), nullable=False),
    Column("spec_cid", String(128), nullable=False),
    Column("redundancy", Integer, nullable=False),
    Column("mode", Integer, nullable=False),
    Column("price_cap", String(32), nullable=False),
    Column("fee", String(32), nullable=False),
    Column("timeout_ms", String(32), nullable=False),
    Column("assign_deadline", BigInteger, nullable=False),
    Column("commit_window", BigInteger, nullable=False),
    Column("reveal_window", BigInteger, nullable=False),
    Column("spare_deadline", BigInteger, nullable=False),
    Column("settle_deadline", BigInteger, nullable=False),
    Column("created_block", BigInteger, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("result_cid", String(128)),
    Column("failure_reason", Text),
    Column("failure_provider", String(42)),
    Column("settle_tx", String(66)),
    Column("requirements", Text),
    Column("settle_attempts", Integer, nullable=False, server_default="0"),
    Column("abort_tx", String(66)),
    Column("refund", String(32)),
    Column("waiting", Text),
    Column("spot_check_p", Float),
    Column("spot_checked", Boolean),
    Column("spot_check_note", Text),
    Column("checker", String(42)),
    Column("matched_at", Float),
    Column("history_recorded", Boolean, nullable=False, server_default=false()),
)

job_providers = Table(
    "job_providers",
    metadata,
    Column("job_id", String(66), ForeignKey("jobs.job_id"), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("address", String(42), nullable=False, index=True),
    Column("peer_id", String(128), nullable=False),
    Column("multiaddrs", Text, nullable=False),
    Column("price", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("rate_per_hour", String(32), nullable=False, server_default="0"),
    Column("assigned_at", BigInteger),
    Column("accept_sig", String(132)),
    Column("accept_expiry", BigInteger),
    Column("busy", Boolean, nullable=False, server_default=false()),
    Column("replaces", Integer),
    Column("commit_hash", String(66)),
    Column("commit_sig", String(132)),
    Column("receipt_sig", String(132)),
    Column("result_cid", String(128)),
    Column("runtime_ms", String(32)),
    Column("salt", String(66)),
    Column("reveal_sig", String(132)),
    Column("reveal_attempts", Integer, nullable=False, server_default="0"),
    Column("onchain_commit", String(66)),
    Column("onchain_reveal_hash", String(66)),
    Column("onchain_result", String(66)),
    Column("onchain_runtime_ms", String(32)),
    Column("onchain_votes", Boolean, nullable=False, server_default=false()),
    Column("outcome", String(16)),
    Column("billed_ms", String(32)),
    Column("pay", String(32)),
    Column("slashed", String(32)),
    Column("detail", Text),
    Column("updated_at", Float, nullable=False),
    Column("failure", String(16)),
    Column("reputation_recorded", Boolean, nullable=False, server_default=false()),
)

job_declines = Table(
    "job_declines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(66), ForeignKey("jobs.job_id"), nullable=False),
    Column("seat", Integer, nullable=False),
    Column("address", String(42), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_job_declines_job", "job_id", "id"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(66), ForeignKey("jobs.job_id"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("at", Float, nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_job_events_job", "job_id", "id"),
)

job_logs = Table(
    "job_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(66), ForeignKey("jobs.job_id"), nullable=False),
    Column("provider", String(42), nullable=False),
    Column("at", Float, nullable=False),
    Column("text", Text, nullable=False),
    Index("ix_job_logs_job", "job_id", "id"),
)

explanations = Table(
    "explanations",
    metadata,
    Column("job_id", String(66), ForeignKey("jobs.job_id"), primary_key=True),
    Column("body", Text, nullable=False),
)

cursors = Table(
    "cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("block", BigInteger, nullable=False),
)

reputations = Table(
    "reputations",
    metadata,
    Column("address", String(42), primary_key=True),
    Column("alpha", Float, nullable=False),
    Column("beta", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("successes", Integer, nullable=False, server_default="0"),
    Column("slashes", Integer, nullable=False, server_default="0"),
    Column("faults", Integer, nullable=False, server_default="0"),
    Column("timeouts", Integer, nullable=False, server_default="0"),
    Column("withheld", Integer, nullable=False, server_default="0"),
)


# History (migration 0005): one row per period (``bucket`` start, ``resolution`` seconds).
# Every figure is a sum, a count or a maximum, so hours merge into days exactly.


def _period() -> list[Column[Any]]:
    return [
        Column("bucket", BigInteger, primary_key=True),
        Column("resolution", Integer, primary_key=True),
    ]


def _count(name: str) -> Column[Any]:
    return Column(name, Integer, nullable=False, server_default="0")


def _seconds(name: str) -> Column[Any]:
    return Column(name, Float, nullable=False, server_default="0")


def _amount(name: str) -> Column[Any]:
    return Column(name, String(40), nullable=False, server_default="0")


history_providers = Table(
    "history_providers",
    metadata,
    *_period(),
    Column("address", String(42), primary_key=True),
    Column("gpu_model", String(128), nullable=False, server_default=""),
    _seconds("gpu_offered_s"),
    _seconds("gpu_sold_s"),
    _seconds("slot_offered_s"),
    _seconds("slot_sold_s"),
    _count("jobs"),
    _count("failed_timeout"),
    _count("failed_fault"),
    _count("failed_job"),
    _count("withheld"),
    _count("slashed"),
    _amount("earnings"),
    Index("ix_history_providers_address", "address", "bucket"),
)

history_requesters = Table(
    "history_requesters",
    metadata,
    *_period(),
    Column("address", String(42), primary_key=True),
    _count("jobs"),
    _count("failed"),
    _amount("spend"),
    _amount("refunds"),
    _amount("fees"),
    Column("data_bytes", BigInteger, nullable=False, server_default="0"),
    Index("ix_history_requesters_address", "address", "bucket"),
)

history_market = Table(
    "history_market",
    metadata,
    *_period(),
    _count("jobs"),
    _count("failed"),
    _count("queue_waits"),
    _seconds("queue_wait_s"),
    _seconds("queue_wait_max_s"),
)

history_prices = Table(
    "history_prices",
    metadata,
    *_period(),
    Column("gpu_model", String(128), primary_key=True),
    Column("dtype", String(8), primary_key=True),
    _count("samples"),
    _seconds("price_sum"),
    Column("price_min", Float),
)
