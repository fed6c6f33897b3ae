"""Versioned schema migrations, one ordered list per backend, applied once each.

Append only: a deployed database has run every step up to its recorded version. `release`
(and `metronome-destination migrate`) applies them; opening a store applies any still missing,
so a development machine needs no extra step. On Postgres an advisory lock makes concurrent
boots of many processes apply each step exactly once.
"""
from __future__ import annotations

# Tables added after the first release are written once and typed per backend.
_SQLITE_TYPES = {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "int": "INTEGER"}
_POSTGRES_TYPES = {"id": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "blob": "BYTEA", "int": "BIGINT"}
# Refused events, and the sender's shared state (the halt flag).
_DEAD_LETTERS = """
    CREATE TABLE dead_letters (
        id {id},
        transaction_id TEXT,
        raw {blob} NOT NULL,
        payload {blob},
        code TEXT NOT NULL,
        reason TEXT NOT NULL,
        mapping_version TEXT NOT NULL,
        stage TEXT NOT NULL,
        received_at_ms {int} NOT NULL,
        dead_lettered_at_ms {int} NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX dead_letters_code ON dead_letters (code, dead_lettered_at_ms);
    CREATE TABLE sender_state (key TEXT PRIMARY KEY, value TEXT);
"""
_DELIVERY_LOG = """
    CREATE TABLE delivery_log (
        id {id},
        transaction_id TEXT NOT NULL,
        message_id TEXT,
        customer_id TEXT,
        outcome TEXT NOT NULL,
        status INTEGER,
        answer TEXT NOT NULL,
        payload {blob} NOT NULL,
        attempt INTEGER NOT NULL,
        at_ms {int} NOT NULL
    );
    CREATE INDEX delivery_log_transaction ON delivery_log (transaction_id);
    CREATE INDEX delivery_log_message ON delivery_log (message_id);
    CREATE INDEX delivery_log_customer ON delivery_log (customer_id, at_ms);
    CREATE INDEX delivery_log_at ON delivery_log (at_ms);
"""

# Admin-edited mappings, every version kept; and a small sample of recent events for previews.
_MAPPINGS_AND_SAMPLES = """
    CREATE TABLE mapping_versions (
        id {id},
        document TEXT NOT NULL,
        author TEXT NOT NULL,
        comment TEXT NOT NULL,
        created_at_ms {int} NOT NULL
    );
    CREATE TABLE recent_events (
        id {id},
        raw {blob} NOT NULL,
        source TEXT,
        received_at_ms {int} NOT NULL
    );
    CREATE INDEX dead_letters_time ON dead_letters (dead_lettered_at_ms);
    ALTER TABLE outbox ADD COLUMN source TEXT;
    ALTER TABLE dead_letters ADD COLUMN source TEXT
"""

# Each index on the delivery log is a random-key B-tree insert per delivered event, and with four
# of them the log halved a worker's speed (measured: 25-28k events/s with it, 45-50k without).
# Most events' messageId is their transaction_id, so the messageId index keeps only the rows where
# the two differ; the time index goes, because pruning walks ids (ids grow with time).
_LEANER_DELIVERY_LOG = """
    DROP INDEX delivery_log_at;
    DROP INDEX delivery_log_message;
    CREATE INDEX delivery_log_message ON delivery_log (message_id) WHERE message_id <> transaction_id
"""

# SQLite's outbox as the first release made it; step 5 makes it again without the unique index.
_SQLITE_OUTBOX = """
    CREATE TABLE {name} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        transaction_id TEXT NOT NULL{unique},
        payload BLOB NOT NULL,
        raw BLOB NOT NULL,
        mapping_version TEXT NOT NULL,
        timestamp_ms INTEGER NOT NULL,
        received_at_ms INTEGER NOT NULL,
        available_at_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        last_error TEXT{later_columns}
    )"""

# The outbox's unique index on transaction_id only ever caught repeats still waiting to be sent;
# Metronome ignores a repeated transaction_id for 34 days whenever it arrives, and that is what
# makes retries safe. The index was a random-key B-tree insert per event: with a backlog growing,
# SQLite accepted 22-77% more events per second without it (same hour, A/B). SQLite cannot drop a
# column's UNIQUE, so its table is rebuilt with the same ids and id sequence.
_OUTBOX_COLUMNS = ("id, transaction_id, payload, raw, mapping_version, timestamp_ms, received_at_ms, available_at_ms,"
                   " attempts, lease_owner, last_error, message_id, customer_id, source")
_SQLITE_OUTBOX_WITHOUT_UNIQUE = _SQLITE_OUTBOX.format(
    name="outbox_new", unique="", later_columns=",\n        message_id TEXT,\n        customer_id TEXT,\n        source TEXT") + f""";
    INSERT INTO outbox_new ({_OUTBOX_COLUMNS}) SELECT {_OUTBOX_COLUMNS} FROM outbox;
    DELETE FROM sqlite_sequence WHERE name = 'outbox_new';
    INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox_new', seq FROM sqlite_sequence WHERE name = 'outbox';
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE INDEX outbox_ready ON outbox (available_at_ms, id)
"""

# Leases move out of the outbox row. A claim used to rewrite each claimed row to set its owner and
# lease end, and a row carries the raw CDP event (about 1 KB), so a claim of 1,000 events wrote
# about 400 pages to the WAL, and then to the database at checkpoint. A lease is now a narrow row
# of its own. The outbox row is written once, at accept, and deleted once, at ack. Per 1,000
# events, one process, SQLite: claim 10.5-11.6 ms -> 2.7-3.8 ms, and claim + ack CPU 27-29 ms -> 16-20 ms.
# Rows a worker of the old layout held (lease_owner, available_at_ms in the future) come back
# when that time passes, as an expired lease does; lease_owner is no longer written.
_LEASES = """
    CREATE TABLE leases (
        id {leased_id} PRIMARY KEY,
        owner TEXT NOT NULL,
        until_ms {int} NOT NULL
    )
"""

# The delivery log's lookups by transaction_id and messageId, on keys that are random UUIDs. A
# B-tree on random keys takes each insert on a leaf of its own, anywhere in the index, so an ack of
# 1,000 events wrote about as many index pages, and read them first once the index outgrew the
# cache: the log cost a worker 36 us of CPU an event, more than everything else together. Keyed
# first by the block of LOG_BLOCK_ROWS ids a row falls in, every insert lands in the newest
# block's few hundred pages, which stay cached and take many inserts per ack. A search probes
# each block (sql.search_deliveries): one probe per 10,000 rows of log kept.
LOG_BLOCK_ROWS = 10_000  # never change it: the index is built on this number
_LOG_LOOKUPS_BY_BLOCK = f"""
    DROP INDEX delivery_log_transaction;
    DROP INDEX delivery_log_message;
    CREATE INDEX delivery_log_transaction ON delivery_log ((id / {LOG_BLOCK_ROWS}), transaction_id);
    CREATE INDEX delivery_log_message ON delivery_log ((id / {LOG_BLOCK_ROWS}), message_id)
        WHERE message_id <> transaction_id
"""

# The lookup by customer, per block too. Keyed by customer first, every insert landed at the end of
# its customer's range: as many pages per ack as customers in it (80 WAL frames of 276 per 1,000
# events with 500 customers). A search walks the blocks newest first and stops at its limit.
_CUSTOMER_LOOKUP_BY_BLOCK = f"""
    DROP INDEX delivery_log_customer;
    CREATE INDEX delivery_log_customer ON delivery_log ((id / {LOG_BLOCK_ROWS}), customer_id)
"""

# What the billing check found at accept, for the admin page's Billing view: counts per minute by
# reason and event_type, and the latest example of each. An upsert per pair a request holds, not
# a row per event: a wrong mapping makes every event unbillable, and must not double the writes.
_BILLING_PROBLEMS = """
    CREATE TABLE billing_problem_counts (
        minute_ms {int} NOT NULL,
        reason TEXT NOT NULL,
        event_type TEXT NOT NULL,
        count {int} NOT NULL,
        PRIMARY KEY (minute_ms, reason, event_type)
    );
    CREATE TABLE billing_problem_examples (
        reason TEXT NOT NULL,
        event_type TEXT NOT NULL,
        at_ms {int} NOT NULL,
        transaction_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        message TEXT NOT NULL,
        payload {blob} NOT NULL,
        PRIMARY KEY (reason, event_type)
    )
"""

# Customer ids an accept found unknown to the catalog, for whichever process refreshes it to look
# up: any web process may see a new customer, and only one process at a time talks to Metronome.
_BILLING_CUSTOMER_LOOKUPS = """
    CREATE TABLE billing_customer_lookups (
        customer_id TEXT PRIMARY KEY,
        requested_ms {int} NOT NULL
    )
"""

# The admin page's Delivery view. Counts per minute of what happened to events (received,
# accepted, filtered, refused, delivered, retried, dead-lettered, each with its reason), so the
# chart is right for the whole deployment: the worker's in the transaction that acks, retries or
# dead-letters, the accept path's once a second per process (tally.Buffer), and never for an
# event that was not stored. Postgres writers upsert a row of their own (`shard`, from the
# thread), so concurrent writers never queue on one counter's row lock. The journey of
# one event: each logged attempt says when it was received and by which mapping version, and a
# dead letter can be found by messageId. And the file imports, with how far each got.
_DELIVERY_VIEW = """
    CREATE TABLE delivery_counts (
        minute_ms {int} NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        shard INTEGER NOT NULL,
        count {int} NOT NULL,
        PRIMARY KEY (minute_ms, kind, reason, shard)
    );
    ALTER TABLE delivery_log ADD COLUMN received_at_ms {int};
    ALTER TABLE delivery_log ADD COLUMN mapping_version TEXT;
    ALTER TABLE dead_letters ADD COLUMN message_id TEXT;
    ALTER TABLE dead_letters ADD COLUMN customer_id TEXT;
    CREATE INDEX dead_letters_message ON dead_letters (message_id);
    CREATE INDEX dead_letters_transaction ON dead_letters (transaction_id);
    CREATE INDEX dead_letters_customer ON dead_letters (customer_id);
    CREATE TABLE imports (
        id {id},
        name TEXT NOT NULL,
        fingerprint TEXT,
        who TEXT NOT NULL,
        started_ms {int} NOT NULL,
        updated_ms {int} NOT NULL,
        status TEXT NOT NULL,
        position {int} NOT NULL,
        counts TEXT NOT NULL
    );
    CREATE INDEX imports_fingerprint ON imports (fingerprint)
"""

SQLITE = [
    _SQLITE_OUTBOX.format(name="outbox", unique=" UNIQUE", later_columns="") + """;
    CREATE INDEX outbox_ready ON outbox (available_at_ms, id);
    """ + _DEAD_LETTERS.format(**_SQLITE_TYPES) + """
    """,
    """
    ALTER TABLE outbox ADD COLUMN message_id TEXT;
    ALTER TABLE outbox ADD COLUMN customer_id TEXT;
    """ + _DELIVERY_LOG.format(**_SQLITE_TYPES) + """

    """,
    _MAPPINGS_AND_SAMPLES.format(**_SQLITE_TYPES),
    _LEANER_DELIVERY_LOG,
    _SQLITE_OUTBOX_WITHOUT_UNIQUE,
    _LEASES.format(leased_id="INTEGER", int="INTEGER"),
    _LOG_LOOKUPS_BY_BLOCK,
    _CUSTOMER_LOOKUP_BY_BLOCK,
    _BILLING_PROBLEMS.format(**_SQLITE_TYPES),
    _BILLING_CUSTOMER_LOOKUPS.format(**_SQLITE_TYPES),
    _DELIVERY_VIEW.format(**_SQLITE_TYPES),
]

POSTGRES = [
    """
    CREATE TABLE outbox (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        transaction_id TEXT NOT NULL UNIQUE,
        payload BYTEA NOT NULL,
        raw BYTEA NOT NULL,
        mapping_version TEXT NOT NULL,
        timestamp_ms BIGINT NOT NULL,
        received_at_ms BIGINT NOT NULL,
        available_at_ms BIGINT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        last_error TEXT,
        message_id TEXT,
        customer_id TEXT
    );
    CREATE INDEX outbox_ready ON outbox (available_at_ms, id);
    """ + _DEAD_LETTERS.format(**_POSTGRES_TYPES) + """
    """ + _DELIVERY_LOG.format(**_POSTGRES_TYPES) + """
    """,
    _MAPPINGS_AND_SAMPLES.format(**_POSTGRES_TYPES),
    _LEANER_DELIVERY_LOG,
    "ALTER TABLE outbox DROP CONSTRAINT outbox_transaction_id_key",  # see _SQLITE_OUTBOX_WITHOUT_UNIQUE
    _LEASES.format(leased_id="BIGINT", int="BIGINT"),
    _LOG_LOOKUPS_BY_BLOCK,
    _CUSTOMER_LOOKUP_BY_BLOCK,
    _BILLING_PROBLEMS.format(**_POSTGRES_TYPES),
    _BILLING_CUSTOMER_LOOKUPS.format(**_POSTGRES_TYPES),
    _DELIVERY_VIEW.format(**_POSTGRES_TYPES),
]

STEPS = {"sqlite": SQLITE, "postgres": POSTGRES}
_LOCK_KEY = 0x6D657472  # any constant shared by every process of this service


def apply(db, backend: str) -> int:
    """Run the steps this database has not run yet (inside the caller's transaction); return how many."""
    steps = STEPS[backend]
    if backend == "postgres":
        db.execute(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
    done = db.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]
    for version, script in enumerate(steps[done:], start=done + 1):
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
        db.execute(f"INSERT INTO schema_migrations (version) VALUES ({int(version)})")
    return len(steps) - done


def latest(backend: str) -> int:
    return len(STEPS[backend])
