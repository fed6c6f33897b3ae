"""The embedded SQLite outbox: WAL mode, one connection per thread, fsync on commit by default."""
from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

import orjson

from . import migrations
from .queue_sql import LOG_COLUMNS, SQLQueue


class SQLiteQueue(SQLQueue):
    backend = "sqlite"
    # A list of ids travels as one JSON text parameter, so any batch size is one statement.
    ids_sql = "IN (SELECT value FROM json_each(?))"
    group_commits = True

    def __init__(self, path: str | Path, synchronous: str = "FULL", delivery_log: bool = True, migrate: bool = True):
        super().__init__(delivery_log)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Writers queue on a lock instead of SQLite's busy handler, which sleeps and retries
        # (up to 100 ms a nap): that polling was the accept path's p99. A threading lock orders
        # this process's threads; flock on a side file orders processes, waking the next at once.
        self._write_lock = threading.Lock()
        self._lock_fd = os.open(f"{self.path}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
        if migrate:
            self.migrate()

    def migrate(self) -> int:
        with self._write() as db:
            return migrations.apply(db, "sqlite")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL makes each commit durable against power loss, which is what our 200 promises.
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    @contextmanager
    def _write(self):
        """BEGIN IMMEDIATE takes the write lock up front, so two writers never deadlock on upgrade."""
        db = self._db()
        with self._write_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextmanager
    def _read(self):
        yield self._db()

    def _ids(self, ids) -> str:
        return "[" + ",".join(str(int(i)) for i in ids) + "]"

    def _insert_events(self, db, rows) -> None:
        db.executemany(
            "INSERT INTO outbox (transaction_id, payload, raw, mapping_version, timestamp_ms,"
            " received_at_ms, available_at_ms, message_id, customer_id, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def _insert_log(self, db, owner, outcome, notes) -> None:
        # The notes travel as one JSON array of [id, status, answer, at] rows.
        db.execute(
            f"INSERT INTO delivery_log ({LOG_COLUMNS}) SELECT o.transaction_id, o.message_id, o.customer_id, ?,"
            " n.value ->> 1, n.value ->> 2, o.payload, o.attempts + 1, n.value ->> 3"
            " FROM json_each(?) AS n JOIN outbox AS o ON o.id = n.value ->> 0 WHERE o.lease_owner = ?",
            (outcome, orjson.dumps(notes).decode(), owner))

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        self._local = threading.local()
