"""The durable outbox, on SQLite and on Postgres: it survives reopening, leases expire, only the
lease owner can ack, concurrent claimers never share an event, and every attempt is logged."""
import sqlite3
import threading

import pytest

from conftest import requires_postgres, wait_until
from destination.queue import migrations
from destination.queue.outbox import DeadLetter, DeliveryNote, QueuedEvent
from destination.queue.postgres import PostgresQueue
from destination.queue.sqlite import SQLiteQueue


def events(n, start=0):
    return [QueuedEvent(f"t{i}", b'{"transaction_id":"t%d"}' % i, b"{}", "v1", 1000, f"m{i}", f"c{i % 2}")
            for i in range(start, start + n)]


@pytest.fixture
def open_store(store):
    opened = []

    def make(**kwargs):
        queue = (PostgresQueue(store["database_url"], **kwargs) if "database_url" in store
                 else SQLiteQueue(store["sqlite_path"], **kwargs))
        opened.append(queue)
        return queue
    yield make
    for queue in opened:
        queue.close()


def test_rows_survive_closing_and_reopening(open_store):
    first = open_store()
    first.enqueue(events(5), [DeadLetter(b'{"x":1}', "missing_customer_id", "why", "v1", "receive")], now_ms=0)
    first.close()
    again = open_store()
    assert again.depth() == 5
    assert again.dead_letter_count() == 1
    assert [e.transaction_id for e in again.claim(10, 1000, now_ms=0).events] == [f"t{i}" for i in range(5)]


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path):
    queue = SQLiteQueue(tmp_path / "q.sqlite3")
    db = queue._db()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA secure_delete").fetchone()[0] == 2  # FAST: freed pages are not rewritten


def big_events(n, start=0):
    """Outbox rows the size of a real one: a 1 KB raw event each."""
    return [QueuedEvent(f"t{i}", b'{"transaction_id":"t%d"}' % i, b"x" * 1024, "v1", 1000, f"m{i}")
            for i in range(start, start + n)]


def test_commits_leave_checkpoints_to_their_own_thread(tmp_path):
    """A checkpoint inside a COMMIT held the write lock every process queues on (up to 14 ms);
    here commits only append to the WAL, and the checkpointer thread copies it into the database."""
    path = tmp_path / "q.sqlite3"
    queue = SQLiteQueue(path)
    try:
        queue.enqueue([], [], now_ms=0)  # the schema is in the database file after the first checkpoint
        size = path.stat().st_size
        commits = SQLiteQueue.CHECKPOINT_EVERY - 1 - queue._commits % SQLiteQueue.CHECKPOINT_EVERY
        for batch in range(commits):  # 7 x 900 KB: SQLite's own checkpoint would have run at 4 MB
            queue.enqueue(big_events(600, batch * 600), [], now_ms=0)
        assert path.stat().st_size == size, "a commit copied the WAL into the database itself"
        queue.enqueue(big_events(600, commits * 600), [], now_ms=0)  # the commit that wakes the checkpointer
        wait_until(lambda: path.stat().st_size > size + 4_000_000, message="the checkpointer to copy the WAL")
    finally:
        queue.close()
    again = SQLiteQueue(path)
    assert again.depth() == (commits + 1) * 600
    again.close()


@pytest.mark.parametrize("variable_limit", [None, 999])  # 999: SQLite before 3.32 allows no more parameters
def test_many_rows_go_in_whole_and_in_order_whatever_the_statement_size(tmp_path, variable_limit):
    """Rows are inserted 100 to a statement (fewer where SQLite allows fewer parameters)."""
    queue = SQLiteQueue(tmp_path / "q.sqlite3")
    if variable_limit:
        queue._db().setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variable_limit)
    try:
        sent = events(250)
        assert queue.enqueue(sent, [], now_ms=7) == 250
        claimed = queue.claim(1000, 1000, now_ms=7).events
        assert [(e.transaction_id, e.payload, e.timestamp_ms) for e in claimed] == \
            [(e.transaction_id, e.payload, e.timestamp_ms) for e in sent]
        assert [e.id for e in claimed] == sorted(e.id for e in claimed)
    finally:
        queue.close()


def test_the_wal_stays_bounded_while_commits_never_stop(tmp_path):
    """A PASSIVE checkpoint never waits for writers, so while commits keep coming it never
    catches the WAL's end and SQLite never starts the WAL over: without the RESTART past
    WAL_MAX_FRAMES this WAL reached 4,963 frames in 400 commits, growing all the while."""
    queue = SQLiteQueue(tmp_path / "q.sqlite3")
    queue.WAL_MAX_FRAMES, queue.CHECKPOINT_EVERY = 100, 10**9  # this test runs every checkpoint itself
    done = threading.Event()

    def writer():
        try:
            for batch in range(400):  # about 8 frames a commit
                queue.enqueue(big_events(20, batch * 20), [], now_ms=0)
        finally:
            done.set()
    thread = threading.Thread(target=writer)
    thread.start()
    frames = []
    try:
        while not done.is_set():
            frames.append(queue.checkpoint())
        thread.join()
        assert max(frames) < 1000, max(frames)
        assert queue.depth() == 8000
    finally:
        queue.close()


def test_claimed_rows_are_invisible_until_the_lease_expires(open_store):
    queue = open_store()
    queue.enqueue(events(3), [], now_ms=0)
    first = queue.claim(10, lease_ms=1000, now_ms=0)
    assert len(first.events) == 3
    assert queue.claim(10, 1000, now_ms=999).events == []
    second = queue.claim(10, 1000, now_ms=1000)
    assert [e.transaction_id for e in second.events] == ["t0", "t1", "t2"]
    assert queue.ack_many(first.owner, [([e.id for e in first.events], None)]) == [0]  # the old owner's ack is ignored
    assert queue.depth() == 3
    assert queue.ack_many(second.owner, [([e.id for e in second.events], None)]) == [3]
    assert queue.depth() == 0


def test_retry_later_counts_attempts_and_delays(open_store):
    queue = open_store()
    queue.enqueue(events(1), [], now_ms=0)
    claim = queue.claim(10, 1000, 0)
    queue.retry_later(claim.owner, [claim.events[0].id], available_at_ms=5000, error="503")
    assert queue.claim(10, 1000, 4999).events == []
    assert queue.claim(10, 1000, 5000).events[0].attempts == 1


def test_dead_letter_moves_the_row_with_its_reason(open_store):
    queue = open_store()
    queue.enqueue(events(2), [], now_ms=0)
    claim = queue.claim(10, 1000, 0)
    queue.dead_letter(claim.owner, [(claim.events[0].id, "metronome_400", "customer_id is required")], now_ms=7)
    assert queue.depth() == 1
    [letter] = queue.list_dead_letters()
    assert (letter["transaction_id"], letter["code"], letter["reason"], letter["stage"]) == (
        "t0", "metronome_400", "customer_id is required", "delivery")
    assert letter["payload"] == b'{"transaction_id":"t0"}'


def test_a_repeated_transaction_id_is_queued_again_with_the_same_id(open_store):
    """A sender's retry is stored again, not merged: Metronome ignores the repeat by its
    transaction_id (test_end_to_end's integration check shows the whole trip)."""
    queue = open_store()
    assert queue.enqueue(events(2), [], 0) == 2
    assert queue.enqueue(events(2), [], 0) == 2
    assert queue.depth() == 4
    assert sorted(e.transaction_id for e in queue.claim(10, 1000, 0).events) == ["t0", "t0", "t1", "t1"]


def test_shared_state_round_trips(open_store):
    queue = open_store()
    queue.set_state("paused_until_ms", "123")
    assert queue.get_state("paused_until_ms") == "123"
    queue.set_state("paused_until_ms", None)
    assert queue.get_state("paused_until_ms") is None


def test_a_pause_is_only_ever_lengthened_and_one_process_holds_the_probe(open_store):
    from destination.queue.halt import PROBE, end_pause, pause, paused_until

    queue, other = open_store(), open_store()
    pause(queue, 5_000)
    pause(other, 3_000)  # an answer that came later but said less: it must not shorten the pause
    assert paused_until(queue) == 5_000
    pause(other, 12_000)
    assert paused_until(queue) == 12_000
    assert queue.take_lease(PROBE, "host:1:a", 60_000, now_ms=12_000)
    assert not other.take_lease(PROBE, "host:2:b", 60_000, now_ms=12_001)  # the other process waits
    assert queue.take_lease(PROBE, "host:1:a", 60_000, now_ms=12_002)  # the holder probes again after a failure
    assert other.take_lease(PROBE, "host:2:b", 60_000, now_ms=72_003)  # a prober that died hands it on
    end_pause(other)
    assert paused_until(queue) is None and queue.get_state(PROBE) is None
    pause(queue, 1_000)  # after the end, a new pause starts from nothing, and its probe is free to take
    assert paused_until(other) == 1_000
    assert other.take_lease(PROBE, "host:2:b", 60_000, now_ms=1_000)


def test_concurrent_claimers_never_share_an_event(open_store):
    """Six claimers on separate connections race for 600 events: each event goes to exactly one."""
    queue = open_store()
    queue.enqueue(events(600), [], now_ms=0)
    taken: list[list[str]] = [[] for _ in range(6)]
    start = threading.Barrier(6)

    first_claims = [0] * 6

    def claimer(slot):
        start.wait()  # all six claim at the same instant once, then all drain together
        first = queue.claim(25, lease_ms=60_000, now_ms=0).events
        first_claims[slot] = len(first)
        taken[slot].extend(e.transaction_id for e in first)
        start.wait()
        while claim := queue.claim(25, lease_ms=60_000, now_ms=0).events:
            taken[slot].extend(e.transaction_id for e in claim)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    everything = [tid for slot in taken for tid in slot]
    assert sorted(everything) == sorted(f"t{i}" for i in range(600))  # all claimed, none twice
    assert first_claims == [25] * 6  # the simultaneous first claims were all served, none blocked out


def test_processes_starting_together_seed_the_mappings_once(open_store, tmp_path):
    """Eight stores on separate connections seed at the same instant: exactly one version results."""
    from conftest import ROOT
    from destination.mapping.versions import MappingStore

    stores = [MappingStore(open_store(), ROOT / "destination" / "mappings" / "default.json") for _ in range(8)]
    start = threading.Barrier(8)

    def seed(store):
        start.wait()
        store.seed()

    threads = [threading.Thread(target=seed, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [v["id"] for v in stores[0].queue.list_mapping_versions()] == [1]


def test_a_save_conditioned_on_a_stale_version_stores_nothing(open_store):
    queue = open_store()
    assert queue.save_mapping_version("{}", "a", "", 0, if_latest=None) == 1
    assert queue.save_mapping_version("{}", "b", "", 0, if_latest=None) is None
    assert queue.save_mapping_version("{}", "c", "", 0, if_latest=1) == 2
    assert queue.save_mapping_version("{}", "d", "", 0, if_latest=1) is None
    assert [v["author"] for v in queue.list_mapping_versions()] == ["c", "a"]


def test_every_attempt_is_logged_and_searchable(open_store):
    queue = open_store()
    queue.enqueue(events(2), [], now_ms=0)
    claim = queue.claim(10, 1000, 0)
    ids = [e.id for e in claim.events]
    queue.retry_later(claim.owner, ids, 0, "HTTP 500", note=DeliveryNote(10, 500, "upstream broke"))
    claim = queue.claim(10, 1000, 0)
    queue.ack_many(claim.owner, [(ids, DeliveryNote(20, 200, "HTTP 200"))])
    attempts = queue.search_deliveries(message_id="m1")
    assert [(a["outcome"], a["status"], a["answer"], a["attempt"], a["at_ms"]) for a in attempts] == [
        ("delivered", 200, "HTTP 200", 2, 20), ("retry", 500, "upstream broke", 1, 10)]
    assert attempts[0]["payload"] == b'{"transaction_id":"t1"}' and attempts[0]["transaction_id"] == "t1"
    assert {a["transaction_id"] for a in queue.search_deliveries(customer_id="c0")} == {"t0"}
    assert len(queue.search_deliveries(transaction_id="t0")) == 2
    assert queue.prune_delivery_log(before_ms=15) == 2  # the two retries
    assert [a["outcome"] for a in queue.search_deliveries()] == ["delivered", "delivered"]


def test_the_log_finds_a_message_id_whether_or_not_it_is_the_transaction_id(open_store):
    queue = open_store()
    same = QueuedEvent("msg-1", b"{}", b"{}", "v1", 1000, "msg-1", "c")  # the default mapping's case
    derived = QueuedEvent("msg-2:input_tokens", b"{}", b"{}", "v1", 1000, "msg-2", "c")  # a template id
    none = QueuedEvent("t-3", b"{}", b"{}", "v1", 1000, None, "c")
    queue.enqueue([same, derived, none], [], now_ms=0)
    claim = queue.claim(10, 1000, 0)
    queue.ack_many(claim.owner, [([e.id for e in claim.events], DeliveryNote(5, 200, "HTTP 200"))])
    assert [a["transaction_id"] for a in queue.search_deliveries(message_id="msg-1")] == ["msg-1"]
    assert [a["transaction_id"] for a in queue.search_deliveries(message_id="msg-2")] == ["msg-2:input_tokens"]
    assert queue.search_deliveries(message_id="msg-2:input_tokens") == []  # a transaction_id is not a messageId
    assert queue.search_deliveries(message_id="t-3") == []
    assert [a["message_id"] for a in queue.search_deliveries(transaction_id="t-3")] == [None]


def test_pruning_keeps_every_attempt_from_the_first_new_enough_one_on(open_store):
    queue = open_store()
    queue.enqueue(events(4), [], now_ms=0)
    claim = queue.claim(10, 1000, 0)
    ids = [e.id for e in claim.events]
    queue.ack_many(claim.owner, [([ids[0]], DeliveryNote(10, 200, "")), ([ids[1]], DeliveryNote(30, 200, "")),
                                 ([ids[2]], DeliveryNote(20, 200, "")), ([ids[3]], DeliveryNote(40, 200, ""))])
    assert queue.prune_delivery_log(before_ms=25) == 1  # t1 at 30 is new enough; t2 (20) after it waits a turn
    assert [a["transaction_id"] for a in queue.search_deliveries()] == ["t3", "t2", "t1"]
    assert queue.prune_delivery_log(before_ms=100) == 3 and queue.search_deliveries() == []
    assert queue.prune_delivery_log(before_ms=100) == 0


def test_the_delivery_log_can_be_turned_off(open_store):
    queue = open_store(delivery_log=False)
    queue.enqueue(events(1), [], now_ms=0)
    claim = queue.claim(10, 1000, 0)
    queue.ack_many(claim.owner, [([claim.events[0].id], DeliveryNote(1, 200, ""))])
    assert queue.search_deliveries() == [] and queue.depth() == 0


def test_migrations_are_versioned_and_applied_once(open_store, backend):
    first = open_store(migrate=False)
    assert first.migrate() == migrations.latest(backend)  # a new store runs every step
    assert open_store().migrate() == 0  # and never again
    assert first.schema_version() == migrations.latest(backend)


def test_a_database_at_version_1_is_upgraded_in_place(tmp_path):
    """A store created by the first release keeps its rows and gains the delivery log."""
    queue = _upgraded_from(tmp_path, 1, ("INSERT INTO outbox (transaction_id, payload, raw, mapping_version, timestamp_ms,"
                                         " received_at_ms, available_at_ms) VALUES ('old', x'7b7d', x'7b7d', 'v1', 1, 1, 1)", ()))
    assert [e.transaction_id for e in queue.claim(10, 1000, 5).events] == ["old"]


def test_a_database_at_version_4_keeps_its_rows_ids_and_id_sequence(tmp_path):
    """Step 5 rebuilds SQLite's outbox without the unique index: rows and the id sequence carry
    over, so an id is never handed out twice."""
    insert = ("INSERT INTO outbox (transaction_id, payload, raw, mapping_version, timestamp_ms, received_at_ms,"
              " available_at_ms, lease_owner, message_id, customer_id, source)"
              " VALUES (?, x'7b7d', x'7b7d', 'v1', 1, 1, 1, 'w1', 'm', 'c', 's')")
    queue = _upgraded_from(tmp_path, 4, *[(insert, (transaction_id,)) for transaction_id in "abc"],
                           ("DELETE FROM outbox WHERE transaction_id = 'c'", ()))  # the sequence stays at 3
    with queue._read() as db:  # every column carried over, the old lease owner too
        assert db.execute("SELECT id, transaction_id, lease_owner, source FROM outbox").fetchall() == [
            (1, "a", "w1", "s"), (2, "b", "w1", "s")]
    queue.enqueue(events(1), [], 0)
    claimed = queue.claim(10, 1000, 5).events
    assert [(e.id, e.transaction_id) for e in claimed] == [(1, "a"), (2, "b"), (4, "t0")]


def test_rows_a_worker_held_before_leases_had_their_own_table_come_back_when_that_lease_ends(tmp_path):
    """Step 6 moves leases to their own table and copies none: a row held under the old layout
    (lease_owner set, available_at_ms at the lease's end) is claimed again once that time passes,
    as an expired lease is, with the same transaction_id."""
    queue = _upgraded_from(tmp_path, 5, (
        "INSERT INTO outbox (transaction_id, payload, raw, mapping_version, timestamp_ms, received_at_ms, available_at_ms,"
        " lease_owner) VALUES ('held', x'7b7d', x'7b7d', 'v1', 1, 1, 10000, 'old-worker')", ()))
    assert queue.claim(10, 1000, now_ms=9999).events == []  # the old lease still runs
    claim = queue.claim(10, 1000, now_ms=10000)
    assert [e.transaction_id for e in claim.events] == ["held"]
    assert queue.ack_many(claim.owner, [([claim.events[0].id], None)]) == [1] and queue.depth() == 0


@requires_postgres
def test_postgres_migrations_from_many_processes_at_once_apply_once(postgres_schema):
    """Every web and worker process migrates at boot; the advisory lock makes that safe."""
    errors, queues = [], []

    def boot():
        try:
            queues.append(PostgresQueue(postgres_schema, pool_size=1))
        except Exception as exc:  # any failure is the finding
            errors.append(exc)

    threads = [threading.Thread(target=boot) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert {q.schema_version() for q in queues} == {migrations.latest("postgres")}
    for queue in queues:
        queue.close()


def test_one_ack_of_several_batches_counts_and_logs_each_with_its_own_note(open_store):
    """The ack is two statements for all batches; each batch still gets its own count and note,
    and rows another owner took since are neither removed nor logged."""
    queue = open_store()
    queue.enqueue(events(5), [], now_ms=0)
    stale = queue.claim(5, 1000, now_ms=0)
    ids = [e.id for e in stale.events]
    taken = queue.claim(1, 1000, now_ms=2000)  # t0's lease ran out and another worker took it
    assert [e.id for e in taken.events] == [ids[0]]
    removed = queue.ack_many(stale.owner, [(ids[:2], DeliveryNote(10, 200, "first")),
                                           (ids[2:], DeliveryNote(20, 201, "second"))])
    assert removed == [1, 3] and queue.depth() == 1
    log = {row["transaction_id"]: (row["status"], row["answer"], row["at_ms"]) for row in queue.search_deliveries()}
    assert log == {"t1": (200, "first", 10), "t2": (201, "second", 20), "t3": (201, "second", 20), "t4": (201, "second", 20)}


def test_only_what_a_200_promised_waits_for_the_disk(open_store, backend):
    """Enqueues and replays commit durably (fsync on SQLite, a flushed WAL on Postgres). The
    worker's claim, ack, retry and dead letter do not: undone by a power cut, each leaves its
    event queued, to be sent again with the same transaction_id."""
    queue = open_store()
    level_sql = "PRAGMA synchronous" if backend == "sqlite" else "SHOW synchronous_commit"
    levels = []
    write = queue._write

    def spying_write(*args, **kwargs):
        context = write(*args, **kwargs)
        db = context.__enter__()
        levels.append(str(db.execute(level_sql).fetchone()[0]))
        return _Entered(context, db)

    queue._write = spying_write
    if queue._group is not None:
        queue._group._transaction = spying_write
    durable, lazy = ("2", "1") if backend == "sqlite" else ("on", "off")

    def levels_of(action):
        levels.clear()
        action()
        return set(levels)

    assert levels_of(lambda: queue.enqueue(events(4), [], now_ms=0)) == {durable}
    claim = queue.claim(4, 1000, now_ms=0)
    ids = [e.id for e in claim.events]
    assert levels_of(lambda: queue.claim(4, 1000, now_ms=0)) == {lazy}
    assert levels_of(lambda: queue.ack_many(claim.owner, [(ids[:1], DeliveryNote(1, 200, ""))])) == {lazy}
    assert levels_of(lambda: queue.retry_later(claim.owner, ids[1:2], 0, "later")) == {lazy}
    assert levels_of(lambda: queue.dead_letter(claim.owner, [(ids[2], "bad", "why")], 0)) == {lazy}
    assert levels_of(lambda: queue.enqueue(events(1, start=9), [], now_ms=0)) == {durable}  # switched back
    assert levels_of(lambda: queue.resolve_dead_letters(events(1, start=20), [], [], now_ms=0)) == {durable}
    assert queue.depth() == 4  # t1 waits to be retried, t3 still leased, t9 and t20 new


class _Entered:
    """A transaction already entered by the spy, handed on to the code under test."""

    def __init__(self, context, db):
        self.context, self.db = context, db

    def __enter__(self):
        return self.db

    def __exit__(self, *exc):
        return self.context.__exit__(*exc)


def test_every_outcome_ends_its_lease(open_store):
    """Ack, retry, dead letter and a release each end the lease they act on, so the lease table
    holds only claims in flight; a lease that ran out is taken over, not added to."""
    queue = open_store()
    queue.enqueue(events(6), [], now_ms=0)
    claim = queue.claim(6, 1000, now_ms=0)
    ids = [e.id for e in claim.events]
    queue.ack_many(claim.owner, [(ids[:2], None)])
    queue.retry_later(claim.owner, ids[2:3], 0, "503")
    queue.dead_letter(claim.owner, [(ids[3], "bad", "why")], now_ms=0)
    assert _leases(queue) == [(ids[4], claim.owner), (ids[5], claim.owner)]
    later = queue.claim(6, 1000, now_ms=5000)  # claim's lease ran out: its two rows and the retried one
    assert sorted(e.id for e in later.events) == [ids[2], ids[4], ids[5]]
    assert _leases(queue) == [(i, later.owner) for i in (ids[2], ids[4], ids[5])]
    queue.retry_later(later.owner, [e.id for e in later.events], 5000, "released", count_attempt=False)
    assert _leases(queue) == [] and queue.depth() == 3


def test_a_claim_writes_its_leases_and_leaves_the_outbox_rows_alone(tmp_path):
    """The outbox row, raw event and all, is written once at accept and deleted once at ack: a
    claim only adds narrow lease rows (a claim that rewrote each row took three to four times as long)."""
    queue = SQLiteQueue(tmp_path / "q.sqlite3")
    queue.enqueue(big_events(50), [], now_ms=0)
    with queue._write() as db:
        db.execute("CREATE TABLE outbox_writes (id INTEGER)")
        db.execute("CREATE TRIGGER outbox_updated AFTER UPDATE ON outbox BEGIN INSERT INTO outbox_writes VALUES (new.id); END")
    claim = queue.claim(50, 1000, now_ms=0)
    assert len(claim.events) == 50 and len(_leases(queue)) == 50
    with queue._read() as db:
        assert db.execute("SELECT count(*) FROM outbox_writes").fetchone()[0] == 0
    queue.close()


def _leases(queue) -> list[tuple]:
    with queue._read() as db:
        return [tuple(row) for row in db.execute("SELECT id, owner FROM leases ORDER BY id").fetchall()]


def test_the_log_finds_attempts_in_every_block_of_ids(open_store, backend):
    """Lookups by transaction_id and messageId are indexed per block of LOG_BLOCK_ROWS log ids, so
    random ids land in the newest block's pages; a search probes every block, old and new."""
    queue = open_store()
    queue.enqueue(events(2), [], now_ms=0)
    first = queue.claim(2, 1000, now_ms=0)
    queue.retry_later(first.owner, [first.events[0].id], 0, "503", note=DeliveryNote(1, 503, "busy"))
    queue.retry_later(first.owner, [first.events[1].id], 0, "503", note=DeliveryNote(1, 503, "busy"))
    _skip_log_ids(queue, backend, to=2 * migrations.LOG_BLOCK_ROWS + 5)  # two blocks further on
    again = queue.claim(2, 1000, now_ms=0)
    queue.ack_many(again.owner, [([e.id for e in again.events], DeliveryNote(2, 200, "ok"))])
    for found in (queue.search_deliveries(transaction_id="t1"), queue.search_deliveries(message_id="m1")):
        assert [(row["id"] // migrations.LOG_BLOCK_ROWS, row["outcome"], row["status"]) for row in found] == [
            (2, "delivered", 200), (0, "retry", 503)]
    assert queue.search_deliveries(transaction_id="t9") == []


def test_a_customer_search_walks_the_blocks_newest_first_and_stops_at_its_limit(open_store, backend, monkeypatch):
    from destination.queue import sql as queue_sql

    monkeypatch.setattr(queue_sql, "BLOCKS_PER_PROBE", 1)  # one block a probe, so the walk shows
    queue = open_store()
    queue.enqueue(events(4), [], now_ms=0)  # customers c0, c1, c0, c1
    first = queue.claim(4, 1000, now_ms=0)
    queue.retry_later(first.owner, [e.id for e in first.events], 0, "503", note=DeliveryNote(1, 503, "busy"))
    _skip_log_ids(queue, backend, to=2 * migrations.LOG_BLOCK_ROWS + 5)  # two blocks further on
    again = queue.claim(4, 1000, now_ms=0)
    queue.ack_many(again.owner, [([e.id for e in again.events], DeliveryNote(2, 200, "ok"))])
    found = queue.search_deliveries(customer_id="c0", limit=10)
    assert [(row["transaction_id"], row["status"]) for row in found] == [("t2", 200), ("t0", 200), ("t2", 503), ("t0", 503)]
    assert [row["status"] for row in queue.search_deliveries(customer_id="c0", limit=3)] == [200, 200, 503]
    assert [row["status"] for row in queue.search_deliveries(customer_id="c1", limit=2)] == [200, 200]
    assert queue.search_deliveries(customer_id="nobody") == []


def _upgraded_from(tmp_path, version: int, *statements: tuple) -> SQLiteQueue:
    """A SQLite store as the first `version` migration steps left it, with (sql, params)
    statements run in it, then opened, and so upgraded, by today's code."""
    path = tmp_path / f"v{version}.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
    for step, script in enumerate(migrations.SQLITE[:version], start=1):
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
        db.execute("INSERT INTO schema_migrations VALUES (?)", (step,))
    for sql, params in statements:
        db.execute(sql, params)
    db.close()
    queue = SQLiteQueue(path)
    assert queue.schema_version() == migrations.latest("sqlite")
    return queue


def _skip_log_ids(queue, backend: str, to: int) -> None:
    """The delivery log's next row gets id `to`."""
    with queue._write() as db:
        if backend == "sqlite":
            db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'delivery_log'", (to - 1,))
        else:
            db.execute(f"ALTER TABLE delivery_log ALTER COLUMN id RESTART WITH {to}")
