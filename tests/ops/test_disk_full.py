"""A full disk: accepts answer 503 and lose nothing, /readyz says the store cannot be written while
it cannot and is ready at the next call once it can, and delivery resumes at the next step.

The disk fills as SQLite sees it: `max_page_count` at the database's size makes every write
that needs a new page fail with SQLITE_FULL ("database or disk is full"), the error a full file
system gives, through the same code paths."""
import sqlite3

import pytest

from conftest import WRITE_KEY, track
from destination.app import create_app
from destination.queue.sqlite import SQLiteQueue
from destination.worker.build import build_worker

ROOMY = 1_073_741_823


class FillableQueue(SQLiteQueue):
    """The SQLite store, whose every connection (one per thread, opened on first use) sees the
    disk as `disk()` last left it."""

    limit = ROOMY

    def _db(self):
        db = super()._db()
        if getattr(self._local, "limit", None) != self.limit:
            db.execute(f"PRAGMA max_page_count={self.limit}")
            self._local.limit = self.limit
        return db


def disk(queue: FillableQueue, full: bool) -> None:
    """Full: not one page more, and none free inside the file either (VACUUM returns them)."""
    if full:
        with queue._writers_turn():
            queue._db().execute("VACUUM")
    queue.limit = queue._scalar("PRAGMA page_count") if full else ROOMY


@pytest.fixture
def full_disk_app(settings, clock, tmp_path):
    queue = FillableQueue(tmp_path / "full.sqlite3")
    app = create_app(settings.replace(deliver_in_web=False), queue=queue, clock=clock)
    yield app, queue
    queue.close()


@pytest.mark.parametrize("backend", ["sqlite"])  # the full disk is SQLite's; Postgres's is its server's
def test_a_full_disk_is_a_503_with_nothing_lost_and_readyz_says_so_until_space_returns(full_disk_app, clock):
    app, queue = full_disk_app
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/events", json=track("before", clock.iso()), auth=(WRITE_KEY, "")).status_code == 200
    disk(queue, full=True)
    refused = client.post("/v1/events", json=[track(f"full-{i}", clock.iso()) for i in range(50)], auth=(WRITE_KEY, ""))
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["database"]["reason"].startswith("database cannot be written: ")
    assert "full" in ready.json["checks"]["database"]["reason"]
    disk(queue, full=False)
    assert client.get("/readyz").status_code == 200  # the very next call, not after a delay
    assert client.post("/v1/events", json=track("after", clock.iso()), auth=(WRITE_KEY, "")).status_code == 200
    assert queue.depth() == 2  # "before" and "after": the 503'd request stored nothing, and was told to retry


@pytest.mark.parametrize("backend", ["sqlite"])
def test_delivery_resumes_at_the_next_step_after_an_ack_the_full_disk_refused(full_disk_app, settings, sandbox, clock):
    """An ack frees as many pages as it writes, so a page limit cannot refuse it; SQLite's own
    error stands in for the WAL append a full file system refuses."""
    app, queue = full_disk_app
    client = app.test_client()
    assert client.post("/v1/events", json=[track(f"d{i}", clock.iso()) for i in range(20)], auth=(WRITE_KEY, "")).json["accepted"] == 20
    worker = build_worker(settings, queue, clock=clock)
    real_ack = queue.ack_many

    def ack_on_a_full_disk(owner, batches):  # Metronome has taken the batch; the disk refuses the ack
        raise sqlite3.OperationalError("database or disk is full")
    queue.ack_many = ack_on_a_full_disk
    with pytest.raises(sqlite3.OperationalError, match="full"):
        worker.step()
    assert len(sandbox.state.events) == 20 and queue.depth() == 20  # delivered, not acked, still leased (60 s)
    queue.ack_many = real_ack
    assert worker.step() == worker.idle_s  # the next step, a poll interval later, not a lease later
    assert queue.depth() == 0 and len(sandbox.state.events) == 20 and sandbox.state.duplicates == 0
    assert worker.stats["delivered"] == 20
