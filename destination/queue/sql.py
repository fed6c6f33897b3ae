"""The outbox in SQL, written once for both backends.

SQLite and Postgres differ only in how a connection is had, how a list of ids is passed, how a
claim locks, and how many rows go in at once (outbox rows, delivery-log rows); subclasses
supply those things. Every statement here uses `?` placeholders.
"""
from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections import Counter
from contextlib import AbstractContextManager

from destination.queue import tally as tallies
from destination.queue.group_commit import GroupCommit
from destination.queue.migrations import LOG_BLOCK_ROWS
from destination.queue.outbox import Claim, ClaimedEvent, DeadLetter, DeliveryNote, QueuedEvent
from destination.queue.owners import new_owner, owner_is_dead
from destination.queue.records import Records

log = logging.getLogger("destination.queue")

DEAD_LETTER_COLUMNS = (
    "transaction_id, raw, payload, code, reason, mapping_version, stage, received_at_ms, dead_lettered_at_ms, attempts,"
    " source, message_id, customer_id"
)
LOG_COLUMNS = ("transaction_id, message_id, customer_id, outcome, status, answer, payload, attempt, at_ms, received_at_ms,"
               " mapping_version")
# An outbox row as `_outbox_rows` lays it out, for both backends' `_insert_events`.
OUTBOX_INSERT_COLUMNS = ("transaction_id", "payload", "raw", "mapping_version", "timestamp_ms", "received_at_ms",
                         "available_at_ms", "message_id", "customer_id", "source")
# A claim's candidates: the oldest ready rows without a live lease (params: now, now, limit).
READY_UNLEASED = ("SELECT id FROM outbox AS o WHERE available_at_ms <= ? AND NOT EXISTS"
                  " (SELECT 1 FROM leases AS l WHERE l.id = o.id AND l.until_ms > ?) ORDER BY available_at_ms, id LIMIT ?")
# An expired lease is taken over in place; a live one is left to its owner (param: now).
LEASE_CONFLICT = (" ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms"
                  " WHERE leases.until_ms <= ? RETURNING id")
BLOCKS_PER_PROBE = 16  # a customer search asks for this many blocks of log ids at a time
MAX_ERROR = 1000
RECENT_EVENTS_KEPT = 200
MAX_ANSWER = 2000
ANY = object()  # save_mapping_version: no condition on the newest version
PROBE_KEY, PROBE_BYTES, PROBE_MAX_BYTES = "write-probe", 8192, 4 * 2**20  # write_probe's row: 8 KB to 4 MB
OWNER_CHECK_S = 1.0  # how often a claimer looks for claims left by dead processes


class SQLQueue(Records):
    backend = "sql"
    ids_sql = ""  # how `id` is matched against one list parameter
    # Keep the newest RECENT_EVENTS_KEPT samples. Rows another transaction is deleting are left to
    # it (Postgres: SKIP LOCKED), so concurrent requests never wait on, or deadlock over, a sample.
    prune_recent_sql = "DELETE FROM recent_events WHERE id <= (SELECT max(id) FROM recent_events) - ?"
    group_commits = False
    mapping_lock = ""  # run first in a mapping save; SQLite's BEGIN IMMEDIATE already serializes writers
    tally_shards = 1  # rows per counter and minute (migrations._DELIVERY_VIEW); SQLite has one writer anyway

    def __init__(self, delivery_log: bool = True):
        self.delivery_log = delivery_log
        # SQLite has one writer at a time, so concurrent enqueues share its commits (group_commit.py);
        # Postgres commits many connections in parallel and groups WAL flushes itself.
        self._group = GroupCommit(self._write) if self.group_commits else None
        self._owners_checked = float("-inf")
        self.counts = tallies.Buffer(self._write_counts)  # the accept path's Delivery view counts
        self.failed_write_bytes = 0  # the size of the last accept this process could not store; 0 once one is

    # -- supplied by each backend ------------------------------------------------------------
    def _write(self, durable: bool = True) -> AbstractContextManager:
        """A transaction that commits on success; yields an object with `execute`/`executemany`.

        Not `durable`: the commit does not wait for the disk, so a power cut (not a process crash)
        may undo it. Only what our 200 promised must survive that: accepted events and replays.
        The worker's transactions (claim, ack, retry, dead letter, log pruning) may be undone,
        because each leaves the event in the outbox to be sent again with the same
        transaction_id, which Metronome drops as a repeat. Durable commits cost the worker a
        disk flush per claim and per ack: a fifth of its time on SQLite (py-spy)."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager:
        raise NotImplementedError

    def _ids(self, ids: list[int]):
        raise NotImplementedError

    def _insert_events(self, db, rows: list[tuple]) -> None:
        """Insert outbox rows. A repeated transaction_id is stored again: Metronome ignores the
        repeat (see migrations._SQLITE_OUTBOX_WITHOUT_UNIQUE)."""
        raise NotImplementedError

    def _insert_log(self, db, owner: str, outcome: str, batches: list[tuple[list[int], DeliveryNote]]) -> None:
        """Add a delivery-log row per id, with its batch's note, from the outbox rows `owner` leases."""
        raise NotImplementedError

    # -- the Queue protocol ------------------------------------------------------------------
    def enqueue(self, events: list[QueuedEvent], dead_letters: list[DeadLetter], now_ms: int,
                samples: tuple = (), source: str | None = None, problems: tuple = (), tally=None,
                checkpoint: tuple | None = None) -> int:
        rows = _outbox_rows(events, now_ms)

        def store(db) -> int:
            stored = self._enqueue_in(db, rows, dead_letters, now_ms, samples, source, problems)
            if checkpoint is not None:  # an import's progress commits with the events it covers
                import_id, position, counts = checkpoint
                db.execute("UPDATE imports SET position = ?, counts = ?, updated_ms = ? WHERE id = ?",
                           (position, counts, now_ms, import_id))
            return stored

        try:
            if self._group is None:
                with self._write() as db:
                    stored = store(db)
            else:
                stored = self._group.run(store)
        except Exception:
            # What could not be stored, so /readyz can try a write as large (see write_probe).
            self.failed_write_bytes = sum(len(e.payload) + len(e.raw) for e in events) + sum(len(d.raw) for d in dead_letters)
            raise
        self.failed_write_bytes = 0
        if tally:  # counted once stored, so a request refused with 503 is not counted as received
            self.counts.add(tally, now_ms)
        return stored

    def _enqueue_in(self, db, rows, dead_letters, now_ms, samples, source, problems=()) -> int:
        if rows:
            self._insert_events(db, rows)
        if dead_letters:
            db.executemany(
                f"INSERT INTO dead_letters ({DEAD_LETTER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                [(d.transaction_id, d.raw, d.payload, d.code, d.reason, d.mapping_version, d.stage, now_ms, now_ms,
                  d.source, d.message_id, d.customer_id) for d in dead_letters],
            )
        if samples:  # a few raw events per request, so an admin can preview mappings on real traffic
            db.executemany("INSERT INTO recent_events (raw, source, received_at_ms) VALUES (?, ?, ?)",
                           [(raw, source, now_ms) for raw in samples])
            db.execute(self.prune_recent_sql, (RECENT_EVENTS_KEPT,))
        if problems:
            self._record_problems(db, problems, now_ms)
        return len(rows)

    def _tally(self, db, tally, now_ms: int) -> None:
        """Add a tally ({(kind, reason): count}) to this minute's counters, in the caller's transaction."""
        self._add_counts(db, tallies.upsert_rows(tally, now_ms, self._shard()))

    def _write_counts(self, counts: list[tuple]) -> None:
        """The accept counts' Buffer writes here: (minute_ms, kind, reason, count) rows."""
        shard = self._shard()
        with self._write(durable=False) as db:
            self._add_counts(db, [(minute, kind, reason, shard, count) for minute, kind, reason, count in counts])

    def _close_counts(self) -> None:
        """First thing in close: the buffered accept counts are written while the store is open."""
        try:
            self.counts.close()
        except Exception:
            log.warning("the last second's Delivery view counts could not be written", exc_info=True)

    def flush_counts(self) -> None:
        """Write this process's buffered accept counts now (the admin view reads its own at once)."""
        self.counts.flush()

    def _add_counts(self, db, counts: list[tuple]) -> None:
        db.executemany("INSERT INTO delivery_counts (minute_ms, kind, reason, shard, count) VALUES (?, ?, ?, ?, ?)"
                       " ON CONFLICT (minute_ms, kind, reason, shard) DO UPDATE SET"
                       " count = delivery_counts.count + excluded.count", counts)

    def _shard(self) -> int:
        return threading.get_native_id() % self.tally_shards if self.tally_shards > 1 else 0

    def _record_problems(self, db, problems, now_ms: int) -> None:
        """One upsert per (reason, event_type) in the request, however many events share it."""
        minute = tallies.minute_of(now_ms)
        counts: dict = {}
        latest: dict = {}
        for problem in problems:
            pair = (problem.reason, problem.event_type)
            counts[pair] = counts.get(pair, 0) + 1
            latest[pair] = problem
        db.executemany("INSERT INTO billing_problem_counts (minute_ms, reason, event_type, count) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT (minute_ms, reason, event_type) DO UPDATE SET"
                       " count = billing_problem_counts.count + excluded.count",
                       [(minute, reason, event_type, n) for (reason, event_type), n in sorted(counts.items())])
        db.executemany("INSERT INTO billing_problem_examples (reason, event_type, at_ms, transaction_id, customer_id,"
                       " message, payload) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (reason, event_type) DO UPDATE SET"
                       " at_ms = excluded.at_ms, transaction_id = excluded.transaction_id,"
                       " customer_id = excluded.customer_id, message = excluded.message, payload = excluded.payload",
                       [(p.reason, p.event_type, now_ms, p.transaction_id, p.customer_id, p.message, p.payload)
                        for _, p in sorted(latest.items())])
        pending = sorted({p.customer_id for p in problems if p.reason == "customer_lookup_pending"})
        if pending:
            db.executemany("INSERT INTO billing_customer_lookups (customer_id, requested_ms) VALUES (?, ?)"
                           " ON CONFLICT (customer_id) DO NOTHING", [(cid, now_ms) for cid in pending])

    def customer_lookups(self, limit: int) -> list[str]:
        with self._read() as db:
            return [r[0] for r in db.execute("SELECT customer_id FROM billing_customer_lookups"
                                             " ORDER BY requested_ms, customer_id LIMIT ?", (limit,)).fetchall()]

    def forget_customer_lookups(self, customer_ids: list[str]) -> None:
        if customer_ids:
            with self._write(durable=False) as db:
                db.executemany("DELETE FROM billing_customer_lookups WHERE customer_id = ?",
                               [(cid,) for cid in customer_ids])

    def take_lease(self, name: str, owner: str, ttl_ms: int, now_ms: int) -> bool:
        """Hold the named lease for `ttl_ms` if it is free, expired or already this owner's.

        Kept in the state table as zero-padded "until owner" text, so one conditional upsert,
        compared as text, decides on both backends."""
        value = f"{now_ms + ttl_ms:015d} {owner}"
        with self._write(durable=False) as db:
            db.execute("INSERT INTO sender_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET"
                       " value = excluded.value WHERE sender_state.value IS NULL OR sender_state.value < ?"
                       " OR substr(sender_state.value, 17) = ?",
                       (name, value, f"{now_ms:015d}", owner))
            held = db.execute("SELECT value FROM sender_state WHERE key = ?", (name,)).fetchone()[0]
        return held == value

    def drop_lease(self, name: str, owner: str) -> None:
        """Free the named lease if `owner` still holds it (expired or not)."""
        with self._write(durable=False) as db:
            db.execute("DELETE FROM sender_state WHERE key = ? AND substr(value, 17) = ?", (name, owner))

    def lease(self, name: str) -> tuple[int, str] | None:
        """The named lease's (until_ms, owner), expired or not; None when nobody holds it."""
        value = self.get_state(name)
        return (int(value[:15]), value[16:]) if value else None

    def raise_state(self, key: str, value: int) -> None:
        """Set a numeric state to `value` unless it already holds a larger one, in one statement,
        so two processes writing at once keep the larger."""
        with self._write(durable=False) as db:
            db.execute("INSERT INTO sender_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET"
                       " value = excluded.value WHERE sender_state.value IS NULL OR CAST(sender_state.value AS BIGINT) < ?",
                       (key, str(value), value))

    def billing_problems(self, since_ms: int) -> dict:
        with self._read() as db:
            counts = db.execute("SELECT minute_ms, reason, event_type, count FROM billing_problem_counts"
                                " WHERE minute_ms >= ? ORDER BY minute_ms", (tallies.minute_of(since_ms),)).fetchall()
            examples = db.execute("SELECT reason, event_type, at_ms, transaction_id, customer_id, message, payload"
                                  " FROM billing_problem_examples WHERE at_ms >= ? ORDER BY at_ms DESC",
                                  (since_ms,)).fetchall()
        return {"counts": [tuple(c) for c in counts],
                "examples": [{"reason": e[0], "event_type": e[1], "at_ms": e[2], "transaction_id": e[3],
                              "customer_id": e[4], "message": e[5], "payload": bytes(e[6])} for e in examples]}

    def prune_billing_problems(self, before_ms: int) -> None:
        with self._write(durable=False) as db:
            db.execute("DELETE FROM billing_problem_counts WHERE minute_ms < ?", (before_ms,))
            db.execute("DELETE FROM billing_problem_examples WHERE at_ms < ?", (before_ms,))

    def claim(self, limit: int, lease_ms: int, now_ms: int) -> Claim:
        """Lease the oldest ready rows that no live lease holds; an expired lease is taken over
        in place. If another claimer leased a row after this statement looked (Postgres), the
        conflict's condition is checked against that committed lease, and the row stays its."""
        owner = new_owner()
        with self._write(durable=False) as db:
            self._release_dead_owners(db, now_ms)
            ids = self._lease(db, owner, now_ms + lease_ms, now_ms, limit)
            rows = db.execute(
                "SELECT id, transaction_id, payload, timestamp_ms, attempts, received_at_ms, customer_id FROM outbox"
                f" WHERE id {self.ids_sql} ORDER BY id", (self._ids(ids),)).fetchall() if ids else []
        return Claim(owner, [ClaimedEvent(r[0], r[1], bytes(r[2]), r[3], r[4], r[5], r[6]) for r in rows])

    def ack_many(self, owner: str, batches: list[tuple[list[int], DeliveryNote | None]]) -> list[int]:
        """Several delivered batches in one transaction: log them, end the leases, remove the rows
        still held. On Postgres that is three statements (round trips) however many batches.
        Returns how many rows each batch removed."""
        with self._write(durable=False) as db:
            self._log(db, owner, "delivered", batches)
            gone = self._end_leases(db, owner, [i for ids, _ in batches for i in ids])
            if gone:
                db.execute(f"DELETE FROM outbox WHERE id {self.ids_sql}", (self._ids(gone),))
                self._tally(db, Counter({("delivered", ""): len(gone)}), _noted_at(batches))
            held = set(gone)
            return [sum(1 for i in ids if i in held) for ids, _ in batches]

    def retry_later(self, owner, ids, available_at_ms, error, count_attempt=True, note=None) -> None:
        with self._write(durable=False) as db:
            self._log(db, owner, "retry", [(ids, note)])
            held = self._end_leases(db, owner, ids)
            if held:
                db.execute("UPDATE outbox SET available_at_ms = ?, last_error = ?, attempts = attempts + ?"
                           f" WHERE id {self.ids_sql}",
                           (available_at_ms, error[:MAX_ERROR], 1 if count_attempt else 0, self._ids(held)))
                if count_attempt and note is not None:  # a failed attempt; a release or a halt is not a retry
                    self._tally(db, Counter({("retried", tallies.retry_reason(note.status)): len(held)}), note.at_ms)

    def make_due(self, now_ms: int) -> int:
        """Every event waiting out a retry delay becomes ready now; return how many. Rows with a
        future time are never leased: retry_later ends the lease as it sets the time."""
        with self._write(durable=False) as db:
            return db.execute("UPDATE outbox SET available_at_ms = ? WHERE available_at_ms > ?", (now_ms, now_ms)).rowcount

    def dead_letter(self, owner, refusals, now_ms, note=None) -> None:
        with self._write(durable=False) as db:
            moved: Counter = Counter()
            for event_id, code, reason in refusals:
                self._log(db, owner, "dead_lettered", [([event_id], note and dataclasses.replace(note, answer=reason))])
                if self._end_leases(db, owner, [event_id]):
                    db.execute(
                        f"INSERT INTO dead_letters ({DEAD_LETTER_COLUMNS})"
                        " SELECT transaction_id, raw, payload, ?, ?, mapping_version, 'delivery', received_at_ms, ?, attempts + 1,"
                        " source, message_id, customer_id FROM outbox WHERE id = ?",
                        (code, reason[:MAX_ANSWER], now_ms, event_id))
                    db.execute("DELETE FROM outbox WHERE id = ?", (event_id,))
                    moved[("dead_lettered", code)] += 1
            if moved:
                self._tally(db, moved, now_ms)

    def _release_dead_owners(self, db, now_ms: int) -> None:
        """End the live leases of processes of this host that died holding them (see owners.py),
        at most once a second: a restart after `kill -9` then resends at once, with the same
        transaction_ids, instead of waiting out the lease."""
        if time.monotonic() - self._owners_checked < OWNER_CHECK_S:
            return
        self._owners_checked = time.monotonic()
        owners = [row[0] for row in db.execute("SELECT DISTINCT owner FROM leases WHERE until_ms > ?", (now_ms,))]
        for owner in filter(owner_is_dead, owners):
            released = db.execute("DELETE FROM leases WHERE owner = ? RETURNING id", (owner,)).fetchall()
            log.warning("released %d events claimed by %s, a process that no longer runs", len(released), owner)

    def _lease(self, db, owner: str, until_ms: int, now_ms: int, limit: int) -> list[int]:
        """Lease up to `limit` ready rows to `owner`; return their ids."""
        # `WHERE true`: SQLite reads an INSERT ... SELECT ... ON CONFLICT as a join's ON without it.
        return [row[0] for row in db.execute(
            f"INSERT INTO leases (id, owner, until_ms) SELECT id, ?, ? FROM ({READY_UNLEASED}) AS ready"
            f" WHERE true{LEASE_CONFLICT}", (owner, until_ms, now_ms, now_ms, limit, now_ms)).fetchall()]

    def _end_leases(self, db, owner: str, ids: list[int]) -> list[int]:
        """End `owner`'s leases on these rows; return the ids it still held, now its alone to act
        on. A lease that ran out and was taken by another claimer is not ours: that row is left."""
        return [row[0] for row in db.execute(f"DELETE FROM leases WHERE owner = ? AND id {self.ids_sql} RETURNING id",
                                             (owner, self._ids(ids))).fetchall()]

    def _log(self, db, owner: str, outcome: str, batches: list[tuple[list[int], DeliveryNote | None]]) -> None:
        """Record one delivery attempt per event of every batch with a note, copied from its outbox
        row in the same transaction."""
        if not self.delivery_log:
            return
        noted = [(ids, dataclasses.replace(note, answer=note.answer[:MAX_ANSWER])) for ids, note in batches if note and ids]
        if noted:
            self._insert_log(db, owner, outcome, noted)

    def depth(self) -> int:
        return self._scalar("SELECT count(*) FROM outbox")

    def oldest_pending_ms(self) -> int | None:
        return self._scalar("SELECT received_at_ms FROM outbox ORDER BY id LIMIT 1")

    def dead_letter_count(self) -> int:
        return self._scalar("SELECT count(*) FROM dead_letters")

    def list_dead_letters(self, limit: int = 100) -> list[dict]:
        return self.find_dead_letters(limit=limit)

    def find_dead_letters(self, *, code=None, stage=None, since_ms=None, until_ms=None, after_id=0, limit=100) -> list[dict]:
        """Dead letters matching every given filter, oldest first, from `after_id` on (for paging)."""
        clause, params = _where([("code", "=", code), ("stage", "=", stage), ("dead_lettered_at_ms", ">=", since_ms),
                                 ("dead_lettered_at_ms", "<", until_ms), ("id", ">", after_id or None)])
        return self._dicts(f"SELECT id, {DEAD_LETTER_COLUMNS} FROM dead_letters{clause} ORDER BY id LIMIT ?",
                           (*params, limit))

    def get_dead_letter(self, letter_id: int) -> dict | None:
        found = self._dicts(f"SELECT id, {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?", (letter_id,))
        return found[0] if found else None

    def delete_dead_letters(self, ids: list[int]) -> int:
        with self._write() as db:
            return db.execute(f"DELETE FROM dead_letters WHERE id {self.ids_sql}", (self._ids(ids),)).rowcount

    def resolve_dead_letters(self, events: list[QueuedEvent], resolved: list[int],
                             refused: list[tuple[int, str, str, str]], now_ms: int) -> int:
        """A replay, in one transaction: queue the re-mapped events, remove the dead letters they
        came from, and record why the others are still refused (id, code, reason, mapping version)."""
        rows = _outbox_rows(events, now_ms)
        with self._write() as db:
            if rows:
                self._insert_events(db, rows)
            if resolved:
                db.execute(f"DELETE FROM dead_letters WHERE id {self.ids_sql}", (self._ids(resolved),))
            if refused:
                db.executemany("UPDATE dead_letters SET code = ?, reason = ?, mapping_version = ?, dead_lettered_at_ms = ?,"
                               " attempts = attempts + 1 WHERE id = ?",
                               [(code, reason[:MAX_ANSWER], version, now_ms, letter_id) for letter_id, code, reason, version in refused])
        return len(rows)

    def search_deliveries(self, *, transaction_id=None, message_id=None, customer_id=None, limit=100) -> list[dict]:
        """Delivery attempts for one transaction_id, messageId or customer, newest first."""
        if transaction_id is None and message_id is None and customer_id is not None:
            return self._newest_for_customer(customer_id, limit)
        filters = [("customer_id = ?", [customer_id])] if customer_id is not None else []
        if transaction_id is not None or message_id is not None:
            # The id lookups are indexed per block of ids (migrations._LOG_LOOKUPS_BY_BLOCK): probe each.
            blocks = self._ids(self._log_blocks())
            in_block = f"id / {LOG_BLOCK_ROWS} {self.ids_sql}"
            if transaction_id is not None:
                filters.append((f"{in_block} AND transaction_id = ?", [blocks, transaction_id]))
            if message_id is not None:
                # Rows whose messageId differs from their transaction_id, and rows where the two are the same.
                filters.append((f"(({in_block} AND message_id = ? AND message_id <> transaction_id)"
                                f" OR ({in_block} AND transaction_id = ? AND message_id = ?))",
                                [blocks, message_id, blocks, message_id, message_id]))
        clause = " WHERE " + " AND ".join(sql for sql, _ in filters) if filters else ""
        params = [value for _, values in filters for value in values]
        return self._dicts(f"SELECT id, {LOG_COLUMNS} FROM delivery_log{clause} ORDER BY id DESC LIMIT ?",
                           (*params, limit))

    def _newest_for_customer(self, customer_id: str, limit: int) -> list[dict]:
        """A few blocks of log ids at a time, newest first, until `limit` attempts are found: a
        busy customer's newest attempts come from the first probe, not from sorting all of them."""
        blocks, found = self._log_blocks()[::-1], []
        for start in range(0, len(blocks), BLOCKS_PER_PROBE):
            found += self._dicts(
                f"SELECT id, {LOG_COLUMNS} FROM delivery_log WHERE id / {LOG_BLOCK_ROWS} {self.ids_sql}"
                " AND customer_id = ? ORDER BY id DESC LIMIT ?",
                (self._ids(blocks[start:start + BLOCKS_PER_PROBE]), customer_id, limit - len(found)))
            if len(found) >= limit:
                break
        return found

    def _log_blocks(self) -> list[int]:
        low, high = self._row("SELECT min(id), max(id) FROM delivery_log")
        return list(range(low // LOG_BLOCK_ROWS, high // LOG_BLOCK_ROWS + 1)) if low is not None else []

    def prune_delivery_log(self, before_ms: int) -> int:
        """Delete attempts older than `before_ms`, and the Delivery view's counters with them. Ids
        grow with time, so every attempt below the first newer row goes: a walk over the rows being
        deleted, with no index on time to keep up."""
        with self._write(durable=False) as db:
            db.execute("DELETE FROM delivery_counts WHERE minute_ms < ?", (tallies.minute_of(before_ms),))
            return db.execute(
                "DELETE FROM delivery_log WHERE id < coalesce((SELECT id FROM delivery_log WHERE at_ms >= ? ORDER BY id"
                " LIMIT 1), (SELECT max(id) + 1 FROM delivery_log))", (before_ms,)).rowcount

    # -- mapping versions: every save is a new row; the newest row is the live mapping -----------
    def save_mapping_version(self, document: str, author: str, comment: str, now_ms: int, if_latest=ANY) -> int | None:
        """Store a new version and return its id. With `if_latest` (an id, or None for "no version
        yet"), store only if that is still the newest version, else return None: the check and
        the insert share one locked transaction, so two processes seeding, or two admins saving
        from the same version, cannot both win."""
        with self._write() as db:
            if self.mapping_lock:
                db.execute(self.mapping_lock)
            if if_latest is not ANY:
                latest = db.execute("SELECT max(id) FROM mapping_versions").fetchone()[0]
                if latest != if_latest:
                    return None
            return db.execute("INSERT INTO mapping_versions (document, author, comment, created_at_ms)"
                              " VALUES (?, ?, ?, ?) RETURNING id", (document, author, comment, now_ms)).fetchone()[0]

    def latest_mapping_version(self) -> int | None:
        return self._scalar("SELECT max(id) FROM mapping_versions")

    def get_mapping_version(self, version: int) -> dict | None:
        rows = self._dicts("SELECT id, document, author, comment, created_at_ms FROM mapping_versions WHERE id = ?", (version,))
        return rows[0] if rows else None

    def list_mapping_versions(self, limit: int = 100) -> list[dict]:
        return self._dicts("SELECT id, author, comment, created_at_ms FROM mapping_versions ORDER BY id DESC LIMIT ?", (limit,))

    # -- a sample of recent events, for previews ---------------------------------------------------
    def recent_events(self, limit: int) -> list[dict]:
        return self._dicts("SELECT id, raw, source, received_at_ms FROM recent_events ORDER BY id DESC LIMIT ?", (limit,))

    def get_state(self, key: str) -> str | None:
        return self._scalar("SELECT value FROM sender_state WHERE key = ?", (key,))

    def set_state(self, key: str, value: str | None) -> None:
        with self._write() as db:
            db.execute("INSERT INTO sender_state (key, value) VALUES (?, ?)"
                       " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def ping(self) -> None:
        """Raise if the database cannot answer a query."""
        self._scalar("SELECT 1")

    def write_probe(self) -> None:
        """Raise if the store cannot take a write now. A read answers on a full disk, and so does
        a small write that fits in pages the database has free, so the probe commits a row as
        large as the last accept this process failed to store (two pages when none failed), and
        deletes it in the same transaction. Random text, so Postgres cannot compress it away."""
        size = min(max(PROBE_BYTES, self.failed_write_bytes), PROBE_MAX_BYTES)
        with self._write(durable=False) as db:
            db.execute("INSERT INTO sender_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                       (PROBE_KEY, secrets.token_hex(size // 2)))
            db.execute("DELETE FROM sender_state WHERE key = ?", (PROBE_KEY,))
        self.failed_write_bytes = 0

    def schema_version(self) -> int:
        return self._scalar("SELECT coalesce(max(version), 0) FROM schema_migrations")

    # -- helpers -------------------------------------------------------------------------------
    def _scalar(self, sql: str, params: tuple = ()):
        row = self._row(sql, params)
        return row[0] if row else None

    def _row(self, sql: str, params: tuple = ()):
        with self._read() as db:
            return db.execute(sql, params).fetchone()

    def _dicts(self, sql: str, params: tuple = ()) -> list[dict]:
        with self._read() as db:
            cursor = db.execute(sql, params)
            names = [c[0] for c in cursor.description]
            return [{name: bytes(v) if isinstance(v, memoryview) else v for name, v in zip(names, row)}
                    for row in cursor.fetchall()]


def _outbox_rows(events: list[QueuedEvent], now_ms: int) -> list[tuple]:
    """Column values in the order of OUTBOX_INSERT_COLUMNS."""
    return [(e.transaction_id, e.payload, e.raw, e.mapping_version, e.timestamp_ms, now_ms, now_ms,
             e.message_id, e.customer_id, e.source) for e in events]


def _noted_at(batches: list[tuple[list[int], DeliveryNote | None]]) -> int:
    """When an ack's batches were answered: the minute its delivered events are counted in."""
    return max((note.at_ms for _, note in batches if note), default=int(time.time() * 1000))


def _where(conditions: list[tuple[str, str, object]]) -> tuple[str, list]:
    """` WHERE a = ? AND b >= ?` from (column, operator, value) triples whose value is given."""
    used = [(column, operator, value) for column, operator, value in conditions if value is not None]
    clause = " WHERE " + " AND ".join(f"{column} {operator} ?" for column, operator, _ in used) if used else ""
    return clause, [value for _, _, value in used]

