"""The embedded SQLite outbox: WAL mode, one connection per thread, fsync on commit by default."""
from __future__ import annotations

import sqlite3
import threading
import uuid
from pathlib import Path

from . import migrations
from .queue import Claim, ClaimedEvent, DeadLetter, QueuedEvent

_DEAD_LETTER_COLUMNS = (
    "transaction_id, raw, payload, code, reason, mapping_version, stage, received_at_ms, dead_lettered_at_ms, attempts"
)


class SQLiteQueue:
    def __init__(self, path: str | Path, synchronous: str = "FULL"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._write() as db:
            migrations.apply(db, "sqlite")

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

    def _write(self):
        return _Transaction(self._db())

    def enqueue(self, events: list[QueuedEvent], dead_letters: list[DeadLetter], now_ms: int) -> int:
        with self._write() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO outbox (transaction_id, payload, raw, mapping_version, timestamp_ms,"
                " received_at_ms, available_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.transaction_id, e.payload, e.raw, e.mapping_version, e.timestamp_ms, now_ms, now_ms) for e in events],
            )
            inserted = db.total_changes - before
            db.executemany(
                f"INSERT INTO dead_letters ({_DEAD_LETTER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                [(d.transaction_id, d.raw, d.payload, d.code, d.reason, d.mapping_version, d.stage, now_ms, now_ms)
                 for d in dead_letters],
            )
        return inserted

    def claim(self, limit: int, lease_ms: int, now_ms: int) -> Claim:
        owner = uuid.uuid4().hex
        with self._write() as db:
            rows = db.execute(
                "UPDATE outbox SET available_at_ms = ?, lease_owner = ? WHERE id IN ("
                " SELECT id FROM outbox WHERE available_at_ms <= ? ORDER BY available_at_ms, id LIMIT ?)"
                " RETURNING id, transaction_id, payload, timestamp_ms, attempts",
                (now_ms + lease_ms, owner, now_ms, limit),
            ).fetchall()
        rows.sort()
        return Claim(owner, [ClaimedEvent(r[0], r[1], bytes(r[2]), r[3], r[4]) for r in rows])

    def ack(self, owner: str, ids: list[int]) -> None:
        with self._write() as db:
            db.execute(
                "DELETE FROM outbox WHERE lease_owner = ? AND id IN (SELECT value FROM json_each(?))",
                (owner, _id_list(ids)),
            )

    def retry_later(self, owner, ids, available_at_ms, error, count_attempt=True) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE outbox SET available_at_ms = ?, lease_owner = NULL, last_error = ?, attempts = attempts + ?"
                " WHERE lease_owner = ? AND id IN (SELECT value FROM json_each(?))",
                (available_at_ms, error[:1000], 1 if count_attempt else 0, owner, _id_list(ids)),
            )

    def dead_letter(self, owner, refusals, now_ms) -> None:
        with self._write() as db:
            for event_id, code, reason in refusals:
                moved = db.execute(
                    f"INSERT INTO dead_letters ({_DEAD_LETTER_COLUMNS})"
                    " SELECT transaction_id, raw, payload, ?, ?, mapping_version, 'delivery', received_at_ms, ?, attempts + 1"
                    " FROM outbox WHERE id = ? AND lease_owner = ?",
                    (code, reason[:2000], now_ms, event_id, owner),
                ).rowcount
                if moved:
                    db.execute("DELETE FROM outbox WHERE id = ?", (event_id,))

    def depth(self) -> int:
        return self._db().execute("SELECT count(*) FROM outbox").fetchone()[0]

    def oldest_pending_ms(self) -> int | None:
        row = self._db().execute("SELECT received_at_ms FROM outbox ORDER BY id LIMIT 1").fetchone()
        return row[0] if row else None

    def dead_letter_count(self) -> int:
        return self._db().execute("SELECT count(*) FROM dead_letters").fetchone()[0]

    def list_dead_letters(self, limit: int = 100) -> list[dict]:
        cursor = self._db().execute(f"SELECT id, {_DEAD_LETTER_COLUMNS} FROM dead_letters ORDER BY id LIMIT ?", (limit,))
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def get_state(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM sender_state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_state(self, key: str, value: str | None) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO sender_state (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()


def _id_list(ids) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


class _Transaction:
    """BEGIN IMMEDIATE takes the write lock up front, so two writers never deadlock on upgrade."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
        return False
