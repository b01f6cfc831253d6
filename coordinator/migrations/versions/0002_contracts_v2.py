"""Contracts v2: per-seat windows and billing, consent, receipts, on-chain entries, declines.

Jobs lose the job-wide ``commit_deadline`` (a seat's commit deadline is its ``assigned_at``
plus the job's ``commit_window``) and gain the v2 terms; seats gain the provider's consent,
the coordinator's receipt, the reveal's runtime, what the seat put on chain and what it was
billed, paid or slashed. Jobs stored under v1 keep their rows with zero windows.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _job_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("timeout_ms", sa.String(32), nullable=False, server_default="0"),
        sa.Column("commit_window", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reveal_window", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("spare_deadline", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("settle_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("abort_tx", sa.String(66)),
        sa.Column("refund", sa.String(32)),
    )


def _seat_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("rate_per_hour", sa.String(32), nullable=False, server_default="0"),
        sa.Column("assigned_at", sa.BigInteger),
        sa.Column("accept_sig", sa.String(132)),
        sa.Column("accept_expiry", sa.BigInteger),
        sa.Column("busy", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("replaces", sa.Integer),
        sa.Column("receipt_sig", sa.String(132)),
        sa.Column("runtime_ms", sa.String(32)),
        sa.Column("reveal_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("onchain_commit", sa.String(66)),
        sa.Column("onchain_reveal_hash", sa.String(66)),
        sa.Column("onchain_result", sa.String(66)),
        sa.Column("onchain_runtime_ms", sa.String(32)),
        sa.Column("onchain_votes", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("billed_ms", sa.String(32)),
        sa.Column("pay", sa.String(32)),
        sa.Column("slashed", sa.String(32)),
    )


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for column in _job_columns():
            batch.add_column(column)
        batch.drop_column("commit_deadline")
    with op.batch_alter_table("job_providers") as batch:
        for column in _seat_columns():
            batch.add_column(column)
    op.create_table(
        "job_declines",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(66), sa.ForeignKey("jobs.job_id"), nullable=False),
        sa.Column("seat", sa.Integer, nullable=False),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_job_declines_job", "job_declines", ["job_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_declines_job", "job_declines")
    op.drop_table("job_declines")
    with op.batch_alter_table("job_providers") as batch:
        for column in _seat_columns():
            batch.drop_column(column.name)
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("commit_deadline", sa.BigInteger, nullable=False, server_default="0")
        )
        for column in _job_columns():
            batch.drop_column(column.name)
