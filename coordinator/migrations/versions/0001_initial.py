"""Initial schema: jobs, assignments, events, logs, explanations, cursors, reputations.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(66), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requester", sa.String(42), nullable=False),
        sa.Column("coordinator", sa.String(42), nullable=False),
        sa.Column("spec_cid", sa.String(128), nullable=False),
        sa.Column("redundancy", sa.Integer, nullable=False),
        sa.Column("mode", sa.Integer, nullable=False),
        sa.Column("price_cap", sa.String(32), nullable=False),
        sa.Column("fee", sa.String(32), nullable=False),
        sa.Column("assign_deadline", sa.BigInteger, nullable=False),
        sa.Column("commit_deadline", sa.BigInteger, nullable=False),
        sa.Column("settle_deadline", sa.BigInteger, nullable=False),
        sa.Column("created_block", sa.BigInteger, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("result_cid", sa.String(128)),
        sa.Column("failure_reason", sa.Text),
        sa.Column("failure_provider", sa.String(42)),
        sa.Column("settle_tx", sa.String(66)),
        sa.Column("requirements", sa.Text),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_requester", "jobs", ["requester"])
    op.create_table(
        "job_providers",
        sa.Column("job_id", sa.String(66), sa.ForeignKey("jobs.job_id"), primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("peer_id", sa.String(128), nullable=False),
        sa.Column("multiaddrs", sa.Text, nullable=False),
        sa.Column("price", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("commit_hash", sa.String(66)),
        sa.Column("commit_sig", sa.String(132)),
        sa.Column("result_cid", sa.String(128)),
        sa.Column("salt", sa.String(66)),
        sa.Column("reveal_sig", sa.String(132)),
        sa.Column("outcome", sa.String(16)),
        sa.Column("detail", sa.Text),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_job_providers_address", "job_providers", ["address"])
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(66), sa.ForeignKey("jobs.job_id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_job_events_job", "job_events", ["job_id", "id"])
    op.create_table(
        "job_logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(66), sa.ForeignKey("jobs.job_id"), nullable=False),
        sa.Column("provider", sa.String(42), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_job_logs_job", "job_logs", ["job_id", "id"])
    op.create_table(
        "explanations",
        sa.Column("job_id", sa.String(66), sa.ForeignKey("jobs.job_id"), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_table(
        "cursors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("block", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "reputations",
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("alpha", sa.Float, nullable=False),
        sa.Column("beta", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("reputations", "cursors", "explanations", "job_logs", "job_events"):
        op.drop_table(table)
    op.drop_table("job_providers")
    op.drop_table("jobs")
