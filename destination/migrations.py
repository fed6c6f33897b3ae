"""Versioned schema migrations, one ordered list per backend, applied once each."""
from __future__ import annotations

# Append only: a deployed database has run every step before its recorded version.
SQLITE = [
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        transaction_id TEXT NOT NULL UNIQUE,
        payload BLOB NOT NULL,
        raw BLOB NOT NULL,
        mapping_version TEXT NOT NULL,
        timestamp_ms INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,
        available_at_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        last_error TEXT
    );
    CREATE INDEX outbox_ready ON outbox (available_at_ms, id);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        transaction_id TEXT,
        raw BLOB NOT NULL,
        payload BLOB,
        code TEXT NOT NULL,
        reason TEXT NOT NULL,
        mapping_version TEXT NOT NULL,
        stage TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        dead_lettered_at_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX dead_letters_code ON dead_letters (code, dead_lettered_at_ms);
    CREATE TABLE sender_state (key TEXT PRIMARY KEY, value TEXT);
    """,
]


def apply(db, backend: str) -> int:
    """Run the steps this database has not run yet (inside the caller's transaction)."""
    steps = {"sqlite": SQLITE}[backend]
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
    done = db.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]
    for version, script in enumerate(steps[done:], start=done + 1):
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
        db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
    return len(steps) - done
