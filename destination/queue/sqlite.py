"""The embedded SQLite outbox: WAL mode, one connection per thread, fsync on commit by default.

Checkpoints (copying the WAL back into the database file) run on a thread of their own, outside
the write lock. SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold,
so it ran while this process held the lock every writer on the machine queues on: measured over
200 commits of 100 events, the 10 that checkpointed took 112 ms of 293, up to 14 ms each, and
every request of every process waited behind them. A PASSIVE checkpoint needs no write lock.
"""
from __future__ import annotations

import fcntl
import functools
import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from destination.queue import migrations
from destination.queue.sql import LOG_COLUMNS, OUTBOX_INSERT_COLUMNS, SQLQueue

log = logging.getLogger("destination.queue")


ROWS_PER_INSERT = 100  # a request's worth; 1,000 parameters, which every SQLite since 3.32 allows
_COLUMNS = len(OUTBOX_INSERT_COLUMNS)


@functools.lru_cache(maxsize=ROWS_PER_INSERT)
def _insert_sql(rows: int) -> str:
    return (f"INSERT INTO outbox ({', '.join(OUTBOX_INSERT_COLUMNS)}) VALUES "
            + ", ".join(["(" + ", ".join("?" * _COLUMNS) + ")"] * rows))


class SQLiteQueue(SQLQueue):
    backend = "sqlite"
    # A list of ids travels as one JSON text parameter, so any batch size is one statement.
    ids_sql = "IN (SELECT value FROM json_each(?))"
    group_commits = True

    CHECKPOINT_EVERY = 8  # commits between checkpoints, so each copies about the 4 MB SQLite's own default did
    CHECKPOINT_IDLE_S = 1.0  # a quiet process still checkpoints what its last commits left
    # A PASSIVE checkpoint never waits, so under steady writes it may never catch the WAL's end, and
    # SQLite only starts the WAL over once one has. Past this many frames (64 MB of 4 KB pages) a
    # RESTART checkpoint holds the write lock for the little left to copy, and the WAL starts over.
    WAL_MAX_FRAMES = 16384

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
        self._commits = 0
        self._checkpoint_due = threading.Event()
        self._checkpointer: tuple[int, threading.Thread] | None = None  # (pid, thread): a fork needs its own
        self._closed = False
        if migrate:
            self.migrate()

    def migrate(self) -> int:
        with self._write() as db:
            return migrations.apply(db, "sqlite")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            if self._closed:  # a thread still running after close must not open the file again
                raise sqlite3.ProgrammingError("the SQLite store is closed")
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            # Turning a new file to WAL needs it alone, and SQLite answers "database is locked" at
            # once, without its busy wait, while another process migrates it: two gunicorn workers
            # booting on a fresh file failed so, and with them `serve`. Writers take this turn too.
            with self._writers_turn():
                db.execute("PRAGMA journal_mode=WAL")
            # FULL makes each commit durable against power loss, which is what our 200 promises.
            self._synchronous(db, self.synchronous)
            db.execute("PRAGMA busy_timeout=30000")
            # Debian's SQLite zeroes every deleted row, so an ack wrote each freed outbox page to
            # the WAL and again at checkpoint (362 frames per 1,000 events, against 173). FAST
            # still zeroes deleted rows on pages that are written anyway; a freed page keeps its
            # bytes until it is reused, which a queue does within seconds. Worker CPU: -10%.
            db.execute("PRAGMA secure_delete=FAST")
            db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it, outside the write lock
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    @contextmanager
    def _write(self, durable: bool = True):
        """BEGIN IMMEDIATE takes the write lock up front, so two writers never deadlock on upgrade.

        Not durable: synchronous=NORMAL for this transaction, so its COMMIT writes the WAL without
        an fsync. The next durable commit's fsync covers its frames too (one file), and a power
        cut before that rolls it back whole: the WAL's checksums end the log at the last frame
        written out intact."""
        db = self._db()
        self._synchronous(db, self.synchronous if durable else "NORMAL")
        with self._writers_turn():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                # SQLite has already rolled back after some errors (SQLITE_FULL, an I/O error); a
                # second ROLLBACK would raise "no transaction is active" and hide the real cause.
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            self._commits += 1
        if self._commits % self.CHECKPOINT_EVERY == 0:
            self._wake_checkpointer()

    def _synchronous(self, db: sqlite3.Connection, level: str) -> None:
        """Set the connection's fsync level between transactions, only when it changes."""
        if getattr(self._local, "synchronous", None) != level:
            db.execute(f"PRAGMA synchronous={level}")
            self._local.synchronous = level

    @contextmanager
    def _writers_turn(self):
        """This process's threads queue on a lock, then processes on flock of a side file."""
        with self._write_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _wake_checkpointer(self) -> None:
        with self._lock:  # two committing threads must not start two checkpointers
            pid, thread = self._checkpointer or (None, None)
            if pid != os.getpid() or not thread.is_alive():
                thread = threading.Thread(target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True)
                self._checkpointer = (os.getpid(), thread)
                thread.start()
        self._checkpoint_due.set()

    def _checkpoint_loop(self) -> None:
        while not self._closed:
            self._checkpoint_due.wait(self.CHECKPOINT_IDLE_S)
            self._checkpoint_due.clear()
            if self._closed:
                return
            try:
                self.checkpoint()
            except sqlite3.Error:  # the next round tries again; the WAL only grows meanwhile
                log.exception("WAL checkpoint failed; will retry")

    def checkpoint(self) -> int:
        """Copy committed WAL frames into the database without blocking writers; start the WAL
        over when it has grown past WAL_MAX_FRAMES. Returns the WAL's frame count before."""
        _, frames, _ = self._db().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames > self.WAL_MAX_FRAMES:
            with self._writers_turn():
                self._db().execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        return frames

    @contextmanager
    def _read(self):
        yield self._db()

    def _ids(self, ids) -> str:
        return "[" + ",".join(str(int(i)) for i in ids) + "]"

    def _insert_events(self, db, rows) -> None:
        """One statement for up to ROWS_PER_INSERT rows. executemany steps SQLite once a row, and
        each step lets go of the GIL: a thread mapping the next request takes it and keeps it
        for up to the 5 ms switch interval, all while this thread holds the write lock every
        process waits on. With one busy thread beside it, 100 rows took 445 ms that way, 11 ms
        as one statement (0.7 and 0.3 ms with no other thread)."""
        per_statement = max(1, min(ROWS_PER_INSERT, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _COLUMNS))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start:start + per_statement]
            db.execute(_insert_sql(len(chunk)), [value for row in chunk for value in row])

    def _insert_log(self, db, owner, outcome, batches) -> None:
        # A statement per batch, its note as plain parameters and only the ids as JSON: one
        # statement for all, its notes as JSON rows, spent a third of the log's time parsing them.
        for ids, note in batches:
            db.execute(
                f"INSERT INTO delivery_log ({LOG_COLUMNS}) SELECT o.transaction_id, o.message_id, o.customer_id, ?, ?, ?,"
                " o.payload, o.attempts + 1, ?, o.received_at_ms, o.mapping_version FROM json_each(?) AS n JOIN leases AS l ON l.id = n.value"
                " JOIN outbox AS o ON o.id = l.id WHERE l.owner = ?",
                (outcome, note.status, note.answer, note.at_ms, self._ids(ids), owner))

    def close(self) -> None:
        self._close_counts()
        self._closed = True
        self._checkpoint_due.set()
        pid, thread = self._checkpointer or (None, None)
        if thread is not None and pid == os.getpid():
            thread.join(10)
        # No write may be mid-commit on a connection closed under it (sqlite3 would crash the
        # process), so closing waits for this process's writer's turn.
        with self._write_lock, self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        self._local = threading.local()
