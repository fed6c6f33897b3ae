"""Group commit: concurrent enqueues share transactions, yet each is answered only after the
commit holding its rows, and one failing piece never undoes or fails the others."""
import sqlite3
import threading
from contextlib import contextmanager

import pytest
from test_queue import events, open_store  # noqa: F401  (the fixture, on both backends)

from destination.queue.group_commit import GroupCommit


class Store:
    """A real SQLite file with a transaction context that counts commits."""

    def __init__(self, path, fail_commit=False, fail_begin=False):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER UNIQUE)")
        self.commits = 0
        self.fail_commit = fail_commit
        self.fail_begin = fail_begin

    @contextmanager
    def transaction(self):
        if self.fail_begin:
            raise sqlite3.OperationalError("unable to open database file")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            if self.fail_commit:
                raise sqlite3.OperationalError("disk I/O error")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        self.commits += 1

    def values(self):
        return sorted(v for (v,) in self.db.execute("SELECT v FROM t"))


def run_together(group, works):
    """Start every work at once from its own thread; return each one's result or exception."""
    outcomes = [None] * len(works)
    start = threading.Barrier(len(works))

    def call(i):
        start.wait()
        try:
            outcomes[i] = group.run(works[i])
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(works))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def insert(value):
    return lambda db: db.execute("INSERT INTO t (v) VALUES (?)", (value,)).rowcount


def test_concurrent_work_is_all_committed_in_fewer_transactions(tmp_path):
    store = Store(tmp_path / "g.sqlite3")
    statements = []
    store.db.set_trace_callback(statements.append)
    outcomes = run_together(GroupCommit(store.transaction), [insert(i) for i in range(200)])
    assert outcomes == [1] * 200 and store.values() == list(range(200))
    assert 1 <= store.commits < 200  # shared commits: the point of the exercise
    # Savepoints only when a piece fails: each statement lets go of the GIL under the write lock.
    assert not [s for s in statements if "SAVEPOINT" in s]
    print(f"200 concurrent pieces, {store.commits} commits")


def test_a_failing_piece_is_undone_alone_and_gets_its_own_error(tmp_path):
    store = Store(tmp_path / "g.sqlite3")
    store.db.execute("INSERT INTO t (v) VALUES (7)")
    outcomes = run_together(GroupCommit(store.transaction), [insert(i) for i in range(20)])
    assert [type(o) for o in outcomes].count(sqlite3.IntegrityError) == 1
    assert isinstance(outcomes[7], sqlite3.IntegrityError)
    assert store.values() == list(range(20))
    assert outcomes[:7] + outcomes[8:] == [1] * 19  # the others' results, from the savepoint run


def test_a_piece_failing_alone_gets_its_error_and_the_next_group_is_unharmed(tmp_path):
    store = Store(tmp_path / "g.sqlite3")
    group = GroupCommit(store.transaction)
    store.db.execute("INSERT INTO t (v) VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError):
        group.run(insert(1))
    assert group.run(insert(2)) == 1 and store.values() == [1, 2]


def test_a_failed_commit_fails_every_piece_in_it_and_stores_none(tmp_path):
    store = Store(tmp_path / "g.sqlite3", fail_commit=True)
    outcomes = run_together(GroupCommit(store.transaction), [insert(i) for i in range(30)])
    assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes)
    assert store.values() == []


def test_a_transaction_that_cannot_begin_fails_every_piece_and_strands_none(tmp_path):
    store = Store(tmp_path / "g.sqlite3", fail_begin=True)
    outcomes = run_together(GroupCommit(store.transaction), [insert(i) for i in range(30)])
    assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes)  # none still waiting (None)
    store.fail_begin = False
    assert GroupCommit(store.transaction).run(insert(99)) == 1 and store.values() == [99]


def test_processes_sampling_at_once_never_deadlock(open_store):  # noqa: F811
    """Four stores (as four web processes would) x four threads enqueue with samples at once;
    pruning the samples once deadlocked on Postgres and answered 503."""
    stores = [open_store() for _ in range(4)]
    errors, start = [], threading.Barrier(16)

    def sender(store, slot):
        start.wait()
        for i in range(25):
            try:
                store.enqueue(events(4, start=(slot * 25 + i) * 4), [], 0, samples=(b"{}",) * 3)
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=sender, args=(stores[n % 4], n)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert stores[0].depth() == 16 * 25 * 4
