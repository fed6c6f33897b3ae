"""Choose and open the storage backend from settings.

Kept apart from `outbox`, the interface, so that the interface imports none of the backends that
implement it (each backend imports the interface's types).
"""
from __future__ import annotations

from destination.queue.outbox import Queue


def open_queue(settings, migrate: bool = True) -> Queue:
    """The Postgres backend when DATABASE_URL is set, else the embedded SQLite one."""
    delivery_log = settings.delivery_log_days > 0
    if settings.database_url:
        from destination.queue.postgres import PostgresQueue

        return PostgresQueue(settings.database_url, pool_size=settings.database_pool_size, delivery_log=delivery_log,
                             migrate=migrate)
    from destination.queue.sqlite import SQLiteQueue

    return SQLiteQueue(settings.sqlite_path, synchronous=settings.sqlite_synchronous, delivery_log=delivery_log,
                       migrate=migrate)
