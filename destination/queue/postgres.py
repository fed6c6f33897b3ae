"""The Postgres outbox, shared by every web and worker process on every machine.

A claim takes ready rows with `FOR UPDATE SKIP LOCKED`, so concurrent workers split the queue
between them instead of queueing on each other's locks, and never take the same row twice; the
lease (a row in `leases`) hands a dead worker's rows back when it runs out.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import psycopg
from psycopg_pool import ConnectionPool

from destination.queue import migrations
from destination.queue.sql import LEASE_CONFLICT, LOG_COLUMNS, OUTBOX_INSERT_COLUMNS, READY_UNLEASED, SQLQueue

POOL_WAIT_S = 10  # a request waits this long for a free connection before answering 503
LEASE_ROUNDS = 4  # statements one claim may run while rows it looked at turn out leased by others


class PostgresQueue(SQLQueue):
    backend = "postgres"
    ids_sql = "= ANY(?)"
    prune_recent_sql = ("DELETE FROM recent_events WHERE id IN (SELECT id FROM recent_events"
                        " WHERE id <= (SELECT max(id) FROM recent_events) - ? FOR UPDATE SKIP LOCKED)")
    # Serializes mapping saves across processes (released at commit), so "save only if v3 is
    # still the newest" is one atomic step even under READ COMMITTED.
    mapping_lock = "SELECT pg_advisory_xact_lock(4242001)"
    tally_shards = 64  # each writer thread its own counter rows: see migrations._DELIVERY_VIEW

    def __init__(self, url: str, pool_size: int = 10, delivery_log: bool = True, migrate: bool = True,
                 pool_timeout_s: float = POOL_WAIT_S):
        super().__init__(delivery_log)
        self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, timeout=pool_timeout_s, open=True,
                                   name="destination", kwargs={"connect_timeout": 5})
        try:
            if migrate:
                self.migrate()
        except BaseException:
            self.pool.close()
            raise

    def ping(self) -> None:
        """After a server restart the pool still holds connections that broke with it, and each
        would fail one request before being dropped. When a ping fails, the pool checks every
        idle connection and drops the broken ones, and the ping is tried once more: /readyz is
        ready at the first call after the server is back."""
        try:
            super().ping()
        except psycopg.OperationalError:
            self.pool.check()
            super().ping()

    def migrate(self) -> int:
        with self._write() as db:
            return migrations.apply(db, "postgres")

    @contextmanager
    def _write(self, durable: bool = True):
        # The pool's context commits when the block succeeds and rolls back when it raises; a
        # connection that broke is discarded rather than handed to the next caller.
        with self.pool.connection() as conn:
            if not durable:
                # This transaction's COMMIT returns before its WAL reaches the disk. A crash of
                # the server may undo it whole, never in part; a later durable commit flushes it.
                conn.execute("SET LOCAL synchronous_commit = off")
            yield _Placeholders(conn)

    _read = _write  # durable is moot for a read

    def _ids(self, ids) -> list[int]:
        return [int(i) for i in ids]

    def _insert_events(self, db, rows) -> None:
        # One statement over column arrays: a 2,500-event request is one round trip. The arrays
        # go in binary (`%b`, psycopg's own placeholder, so not through `_translate`): in text
        # form psycopg escapes every element with a regex, which cost more than the insert
        # itself (100 rows: 5.0-5.5 ms text, 2.2-2.3 ms binary).
        db.conn.execute(
            f"INSERT INTO outbox ({', '.join(OUTBOX_INSERT_COLUMNS)}) SELECT * FROM unnest(%b::text[], %b::bytea[],"
            " %b::bytea[], %b::text[], %b::bigint[], %b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::text[])",
            [list(column) for column in zip(*rows)],
        )

    def _lease(self, db, owner, until_ms, now_ms, limit) -> list[int]:
        """Candidates are locked (SKIP LOCKED), so two claimers in flight never pick the same row.
        But a row whose claimer committed after this statement's snapshot is no longer locked,
        and its new lease is invisible to the snapshot: it comes back as a conflict, not as ours.
        So count what was looked at, and ask again, with a new snapshot, for as many as conflicted."""
        ids: list[int] = []
        for _ in range(LEASE_ROUNDS):
            looked, taken = db.execute(
                f"WITH candidates AS ({READY_UNLEASED} FOR UPDATE SKIP LOCKED),"
                f" taken AS (INSERT INTO leases (id, owner, until_ms) SELECT id, ?, ? FROM candidates{LEASE_CONFLICT})"
                " SELECT (SELECT count(*) FROM candidates), array(SELECT id FROM taken)",
                (now_ms, now_ms, limit - len(ids), owner, until_ms, now_ms)).fetchone()
            ids += taken
            if looked == len(taken) or len(ids) >= limit:
                break
        return ids

    def _insert_log(self, db, owner, outcome, batches) -> None:
        # Column arrays, as in _insert_events; the statuses in text form, since a network
        # error has none and psycopg cannot type an array of only NULLs in binary.
        notes = [(i, note.status, note.answer, note.at_ms) for ids, note in batches for i in ids]
        ids, statuses, answers, at_ms = (list(column) for column in zip(*notes))
        db.conn.execute(
            f"INSERT INTO delivery_log ({LOG_COLUMNS}) SELECT o.transaction_id, o.message_id, o.customer_id, %s,"
            " n.status, n.answer, o.payload, o.attempts + 1, n.at_ms, o.received_at_ms, o.mapping_version"
            " FROM unnest(%b::bigint[], %s::int[], %b::text[], %b::bigint[]) AS n(id, status, answer, at_ms)"
            " JOIN leases AS l ON l.id = n.id JOIN outbox AS o ON o.id = l.id WHERE l.owner = %s",
            [outcome, ids, statuses, answers, at_ms, owner])

    def close(self) -> None:
        self._close_counts()
        self.pool.close()


@lru_cache(maxsize=256)
def _translate(sql: str) -> str:
    """The shared SQL uses `?`; psycopg wants `%s` (and a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Placeholders:
    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql: str, params=()):
        return self.conn.execute(_translate(sql), params)

    def executemany(self, sql: str, rows) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(_translate(sql), rows)
