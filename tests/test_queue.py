"""The durable outbox: survives reopening, leases expire, only the lease owner can ack."""
from destination.queue import DeadLetter, QueuedEvent
from destination.queue_sqlite import SQLiteQueue


def events(n, start=0):
    return [QueuedEvent(f"t{i}", b'{"transaction_id":"t%d"}' % i, b"{}", "v1", 1000) for i in range(start, start + n)]


def test_rows_survive_closing_and_reopening(tmp_path):
    path = tmp_path / "q.sqlite3"
    first = SQLiteQueue(path)
    first.enqueue(events(5), [DeadLetter(b'{"x":1}', "missing_customer_id", "why", "v1", "receive")], now_ms=0)
    first.close()
    again = SQLiteQueue(path)
    assert again.depth() == 5
    assert again.dead_letter_count() == 1
    assert [e.transaction_id for e in again.claim(10, 1000, now_ms=0).events] == [f"t{i}" for i in range(5)]


def test_wal_mode_and_full_sync_are_on(tmp_path):
    queue = SQLiteQueue(tmp_path / "q.sqlite3")
    db = queue._db()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_claimed_rows_are_invisible_until_the_lease_expires(tmp_path):
    queue = SQLiteQueue(tmp_path / "q.sqlite3")
    queue.enqueue(events(3), [], now_ms=0)
    first = queue.claim(10, lease_ms=1000, now_ms=0)
    assert len(first.events) == 3
    assert queue.claim(10, 1000, now_ms=999).events == []
    second = queue.claim(10, 1000, now_ms=1000)
    assert [e.transaction_id for e in second.events] == ["t0", "t1", "t2"]
    queue.ack(first.owner, [e.id for e in first.events])  # the old owner's ack is ignored
    assert queue.depth() == 3
    queue.ack(second.owner, [e.id for e in second.events])
    assert queue.depth() == 0


def test_retry_later_counts_attempts_and_delays(tmp_path):
    queue = SQLiteQueue(tmp_path / "q.sqlite3")
    queue.enqueue(events(1), [], now_ms=0)
    claim = queue.claim(10, 1000, 0)
    queue.retry_later(claim.owner, [claim.events[0].id], available_at_ms=5000, error="503")
    assert queue.claim(10, 1000, 4999).events == []
    assert queue.claim(10, 1000, 5000).events[0].attempts == 1


def test_dead_letter_moves_the_row_with_its_reason(tmp_path):
    queue = SQLiteQueue(tmp_path / "q.sqlite3")
    queue.enqueue(events(2), [], now_ms=0)
    claim = queue.claim(10, 1000, 0)
    queue.dead_letter(claim.owner, [(claim.events[0].id, "metronome_400", "customer_id is required")], now_ms=7)
    assert queue.depth() == 1
    [letter] = queue.list_dead_letters()
    assert (letter["transaction_id"], letter["code"], letter["reason"], letter["stage"]) == (
        "t0", "metronome_400", "customer_id is required", "delivery")


def test_a_pending_duplicate_transaction_id_is_stored_once(tmp_path):
    queue = SQLiteQueue(tmp_path / "q.sqlite3")
    assert queue.enqueue(events(2), [], 0) == 2
    assert queue.enqueue(events(3), [], 0) == 1
    assert queue.depth() == 3


def test_shared_state_round_trips(tmp_path):
    queue = SQLiteQueue(tmp_path / "q.sqlite3")
    queue.set_state("paused_until_ms", "123")
    assert queue.get_state("paused_until_ms") == "123"
    queue.set_state("paused_until_ms", None)
    assert queue.get_state("paused_until_ms") is None
