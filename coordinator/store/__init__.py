"""The coordinator's persistent store: SQLAlchemy 2 over SQLite or PostgreSQL.

:class:`Store` is synchronous (the engine is); async code calls it through
:class:`AsyncStore`, which runs each call in a worker thread. The schema is created and
upgraded by Alembic (:func:`coordinator.store.migrate.upgrade`) when the store opens.
"""

from coordinator.store.records import (
    DeclineRecord,
    EventRecord,
    JobRecord,
    LogLine,
    ProviderSlot,
    ReputationRecord,
    SeatFailure,
)
from coordinator.store.store import AsyncStore, Store

__all__ = [
    "AsyncStore",
    "DeclineRecord",
    "EventRecord",
    "JobRecord",
    "LogLine",
    "ProviderSlot",
    "ReputationRecord",
    "SeatFailure",
    "Store",
]
