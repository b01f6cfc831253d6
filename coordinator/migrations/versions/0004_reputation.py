"""Reputation from every verified outcome, each seat counted once.

Seats gain ``failure`` (why a seat failed before committing: ``timeout``, ``fault`` or
``job``, the job's own code or data) and ``reputation_recorded`` (its outcome went into
its provider's reputation, or was judged neutral: never counted twice, across retries and
restarts). Reputations gain the verified outcomes counted per kind, shown to providers by
``GET /providers/{address}/standing``. Seats of jobs that ended before this migration are
marked recorded: their settlements were counted (or not) by the code of the time.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COUNTS = ("successes", "slashes", "faults", "timeouts", "withheld")
ENDED = ("settled", "finalized", "reclaimed", "cancelled", "failed")


def upgrade() -> None:
    with op.batch_alter_table("job_providers") as batch:
        batch.add_column(sa.Column("failure", sa.String(16)))
        batch.add_column(
            sa.Column("reputation_recorded", sa.Boolean, nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("reputations") as batch:
        for name in COUNTS:
            batch.add_column(sa.Column(name, sa.Integer, nullable=False, server_default="0"))
    ended = ", ".join(f"'{state}'" for state in ENDED)
    op.execute(
        sa.text(
            "UPDATE job_providers SET reputation_recorded = :yes WHERE job_id IN "
            f"(SELECT job_id FROM jobs WHERE state IN ({ended}))"
        ).bindparams(yes=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("reputations") as batch:
        for name in COUNTS:
            batch.drop_column(name)
    with op.batch_alter_table("job_providers") as batch:
        batch.drop_column("reputation_recorded")
        batch.drop_column("failure")
