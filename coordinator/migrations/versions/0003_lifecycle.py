"""The shared lifecycle vocabulary and typed sub-states.

Job state ``revealed`` becomes ``revealing`` and seat state ``planned`` becomes ``offered``
(``protocol.lifecycle``). Jobs gain typed fields for what was kept in strings: why a job
waits (``waiting``, once a ``waiting:`` prefix of ``failure_reason``) and the spot-check
draw (``spot_check_p``, ``spot_checked``, ``spot_check_note``, ``checker``, once a
``spot_check`` entry inside ``requirements``).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RENAMED = (("jobs", "revealed", "revealing"), ("job_events", "revealed", "revealing"))
SEATS_RENAMED = (("job_providers", "planned", "offered"),)


def _job_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("waiting", sa.Text),
        sa.Column("spot_check_p", sa.Float),
        sa.Column("spot_checked", sa.Boolean),
        sa.Column("spot_check_note", sa.Text),
        sa.Column("checker", sa.String(42)),
    )


def _rename(table: str, old: str, new: str) -> None:
    op.execute(
        sa.text(f"UPDATE {table} SET state = :new WHERE state = :old").bindparams(new=new, old=old)
    )


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for column in _job_columns():
            batch.add_column(column)
    for table, old, new in RENAMED + SEATS_RENAMED:
        _rename(table, old, new)


def downgrade() -> None:
    for table, old, new in RENAMED + SEATS_RENAMED:
        _rename(table, new, old)
    with op.batch_alter_table("jobs") as batch:
        for column in _job_columns():
            batch.drop_column(column.name)
