"""No credential is stored: a key a sender puts inside an event is stripped before the event is
kept in the outbox, the dead letters or the preview samples, and the admin API never shows it."""
import orjson

from conftest import WRITE_KEY, track
from destination.app import create_app

ADMIN = {"Authorization": "Bearer admin-token-for-credentials"}
HOOK_SECRET = "hook-secret-0123456789"
TABLES = ["outbox", "dead_letters", "recent_events", "delivery_log", "billing_problem_examples"]


def _everything_stored(queue, settings) -> bytes:
    """Every byte the store holds: the files on SQLite (the WAL too), every row as text on Postgres."""
    if not settings.database_url:  # a row is in the database file or still in the WAL: read both
        return b"".join(path.read_bytes() for path in [queue.path, queue.path.with_name(queue.path.name + "-wal")]
                        if path.exists())
    with queue._write() as db:
        rows = [row for table in TABLES for row in db.execute(f"SELECT * FROM {table}").fetchall()]
    return b"".join(bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode()
                    for row in rows for value in row)


def test_a_write_key_or_secret_inside_an_event_is_stored_nowhere_and_shown_nowhere(settings, queue, clock):
    settings = settings.replace(admin_tokens={ADMIN["Authorization"][7:]: "ops"}, webhook_secrets={HOOK_SECRET: "hook"})
    client = create_app(settings, queue=queue, clock=clock).test_client()
    # The key in the body is how analytics-python's older versions and some server SDKs authenticate.
    accepted = {**track("kept", clock.iso()), "writeKey": WRITE_KEY, "context": {"note": f"token={HOOK_SECRET}"}}
    refused = {**track("refused", clock.iso()), "writeKey": WRITE_KEY, "userId": None}
    one = client.post("/v1/track", data=orjson.dumps(accepted), content_type="application/json")
    batch = client.post("/v1/batch", data=orjson.dumps({"batch": [refused], "writeKey": WRITE_KEY}),
                        content_type="application/json")
    assert one.status_code == 200 and one.json["accepted"] == 1
    assert batch.status_code == 200 and batch.json["refused"] == 1

    answers = [client.get(path, headers=ADMIN) for path in ("/admin/recent-events?limit=100", "/admin/dead-letters")]
    assert all(a.status_code == 200 for a in answers)
    shown = b"".join(a.get_data() for a in answers)
    assert b"refused" in shown and b"kept" in shown  # the events are there...
    assert WRITE_KEY.encode() not in shown and HOOK_SECRET.encode() not in shown  # ...their credentials are not
    assert b"token=[redacted]" in shown
    stored = _everything_stored(queue, settings)
    assert b"kept" in stored and b"refused" in stored
    assert WRITE_KEY.encode() not in stored and HOOK_SECRET.encode() not in stored
