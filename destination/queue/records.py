"""What the admin page's Delivery view and the import command read and write beyond the outbox.

A mixin of `SQLQueue` (sql.py supplies `_dicts`, `_row`, `_write` and `ids_sql`): the per-minute
counters, the live leases, one event's journey, and the imports table.
"""
from __future__ import annotations

JOURNEY_OUTBOX = ("id, transaction_id, message_id, customer_id, received_at_ms, available_at_ms, attempts, last_error,"
                  " mapping_version, source, payload")
JOURNEY_DEAD = ("id, transaction_id, message_id, customer_id, code, reason, stage, mapping_version, received_at_ms,"
                " dead_lettered_at_ms, attempts, payload, raw")
IMPORT_COLUMNS = "id, name, fingerprint, who, started_ms, updated_ms, status, position, counts"
FOUND_BY = ("message_id", "transaction_id", "customer_id")  # the columns a journey search may use


class Records:
    def delivery_counts(self, since_ms: int) -> list[tuple]:
        """(minute_ms, kind, reason, count) from `since_ms` on, the writers' shards summed (Postgres
        sums a bigint as numeric: cast back)."""
        with self._read() as db:
            return [tuple(r) for r in db.execute(
                "SELECT minute_ms, kind, reason, CAST(sum(count) AS BIGINT) FROM delivery_counts WHERE minute_ms >= ?"
                " GROUP BY minute_ms, kind, reason ORDER BY minute_ms", (since_ms,)).fetchall()]

    def leases_now(self, now_ms: int) -> dict:
        """Events claimed by a worker and not yet acked, retried or released, and how many processes hold them."""
        events, owners = self._row("SELECT count(*), count(DISTINCT owner) FROM leases WHERE until_ms > ?", (now_ms,))
        return {"events": events, "processes": owners}

    def journey(self, column: str, value: str, limit: int = 20) -> dict:
        """An event's rows still queued and its dead letters, by messageId, transaction_id or customer,
        newest first. The outbox has no index on these (each would slow every accept), so a
        search reads the queue: fine for a backlog of thousands, a few seconds for millions."""
        if column not in FOUND_BY:  # it is spliced into the SQL
            raise ValueError(f"no search by {column!r}")
        return {"queued": self._dicts(f"SELECT {JOURNEY_OUTBOX} FROM outbox WHERE {column} = ? ORDER BY id DESC LIMIT ?",
                                      (value, limit)),
                "dead_letters": self._dicts(f"SELECT {JOURNEY_DEAD} FROM dead_letters WHERE {column} = ?"
                                            " ORDER BY id DESC LIMIT ?", (value, limit))}

    def states(self, prefix: str) -> dict:
        """Every shared-state key that starts with `prefix`, with its value."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._read() as db:
            return dict(db.execute("SELECT key, value FROM sender_state WHERE key LIKE ? ESCAPE '\\'",
                                   (escaped + "%",)).fetchall())

    def delete_states(self, keys: list[str]) -> None:
        with self._write(durable=False) as db:
            db.executemany("DELETE FROM sender_state WHERE key = ?", [(key,) for key in keys])

    # -- imports ---------------------------------------------------------------------------------
    def start_import(self, name: str, fingerprint: str | None, who: str, now_ms: int) -> tuple[int, int, str]:
        """The import to continue (its id, the position it reached and its counts as JSON) if one
        of the same file did not finish, else a new one at position 0."""
        with self._write() as db:
            if fingerprint is not None:
                found = db.execute("SELECT id, position, counts FROM imports WHERE fingerprint = ? AND status <> 'done'"
                                   " ORDER BY id DESC LIMIT 1", (fingerprint,)).fetchone()
                if found:
                    db.execute("UPDATE imports SET status = 'running', who = ?, updated_ms = ? WHERE id = ?",
                               (who, now_ms, found[0]))
                    return found[0], found[1], found[2]
            new = db.execute("INSERT INTO imports (name, fingerprint, who, started_ms, updated_ms, status, position, counts)"
                             " VALUES (?, ?, ?, ?, ?, 'running', 0, '{}') RETURNING id",
                             (name, fingerprint, who, now_ms, now_ms)).fetchone()
            return new[0], 0, "{}"

    def end_import(self, import_id: int, status: str, counts: str, now_ms: int) -> None:
        """`done` or `interrupted` (resumable), with the final counts as JSON."""
        with self._write() as db:
            db.execute("UPDATE imports SET status = ?, counts = ?, updated_ms = ? WHERE id = ?",
                       (status, counts, now_ms, import_id))

    def list_imports(self, limit: int = 50) -> list[dict]:
        return self._dicts(f"SELECT {IMPORT_COLUMNS} FROM imports ORDER BY id DESC LIMIT ?", (limit,))
