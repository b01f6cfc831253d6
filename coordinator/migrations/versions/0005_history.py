"""History: hourly time series of the market, and when each job was matched.

Four tables keyed by ``(bucket, resolution[, key])``: ``bucket`` is the start of the period
in unix seconds, ``resolution`` its length (3600 for hours; rows older than a week are
merged into days, 86400). Every figure is a sum, a count or a maximum, so merging hours
into a day is exact.

- ``history_providers`` (per provider): GPU-seconds and job-slot-seconds offered (sampled
  from the live book) and sold (seat runtimes), seats run, failures by cause, earnings.
- ``history_requesters`` (per requester): jobs ended, failed, spend, refunds, fees.
- ``history_market``: queue wait (created to assign transaction mined), jobs ended.
- ``history_prices`` (per GPU model and dtype): price per verified TFLOP-hour.

Jobs gain ``matched_at`` (the coordinator's clock when the first seat was chosen) and
``history_recorded`` (the job's figures went into the history: never twice). Jobs that
ended before this migration are marked recorded.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ENDED = ("settled", "finalized", "reclaimed", "cancelled", "failed")


def _period() -> list[sa.Column[Any]]:
    return [
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("resolution", sa.Integer, primary_key=True),
    ]


def _count(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Integer, nullable=False, server_default="0")


def _seconds(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Float, nullable=False, server_default="0")


def _amount(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.String(40), nullable=False, server_default="0")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("matched_at", sa.Float))
        batch.add_column(
            sa.Column("history_recorded", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_table(
        "history_providers",
        *_period(),
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("gpu_model", sa.String(128), nullable=False, server_default=""),
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
    )
    op.create_index("ix_history_providers_address", "history_providers", ["address", "bucket"])
    op.create_table(
        "history_requesters",
        *_period(),
        sa.Column("address", sa.String(42), primary_key=True),
        _count("jobs"),
        _count("failed"),
        _amount("spend"),
        _amount("refunds"),
        _amount("fees"),
        sa.Column("data_bytes", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_history_requesters_address", "history_requesters", ["address", "bucket"])
    op.create_table(
        "history_market",
        *_period(),
        _count("jobs"),
        _count("failed"),
        _count("queue_waits"),
        _seconds("queue_wait_s"),
        _seconds("queue_wait_max_s"),
    )
    op.create_table(
        "history_prices",
        *_period(),
        sa.Column("gpu_model", sa.String(128), primary_key=True),
        sa.Column("dtype", sa.String(8), primary_key=True),
        _count("samples"),
        _seconds("price_sum"),
        sa.Column("price_min", sa.Float),
    )
    ended = ", ".join(f"'{state}'" for state in ENDED)
    op.execute(
        sa.text(f"UPDATE jobs SET history_recorded = :yes WHERE state IN ({ended})").bindparams(
            yes=True
        )
    )


def downgrade() -> None:
    op.drop_table("history_prices")
    op.drop_table("history_market")
    op.drop_index("ix_history_requesters_address", "history_requesters")
    op.drop_table("history_requesters")
    op.drop_index("ix_history_providers_address", "history_providers")
    op.drop_table("history_providers")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("history_recorded")
        batch.drop_column("matched_at")
