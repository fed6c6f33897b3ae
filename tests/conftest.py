"""Shared fixtures: a real sandbox and a real app server on loopback, real SQLite files and,
when DATABASE_URL is set, real Postgres: every test that stores events runs on both backends."""
from __future__ import annotations

import os
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
import requests
from hypothesis import settings as hypothesis_settings
from werkzeug.serving import make_server

from destination.app import create_app
from destination.config import load_settings
from destination.queue.connect import open_queue
from destination.sandbox.server import SandboxServer
from destination.worker.build import build_worker

# Timing is measured in bench/, never asserted in tests.
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")

pytest_plugins = ["browser"]  # the headless Chromium fixture, for the admin page tests
ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
WRITE_KEY = "test-write-key"
TOKEN = "sandbox-token"
# The SDK captures were made on this day; the clock is anchored here so their timestamps stay
# inside Metronome's 34-day window however long after that the suite runs.
# Tests use Postgres when this is set (.ci/run sets it); each test gets a schema of its own.
POSTGRES_URL = os.environ.get("DATABASE_URL", "")
# Both always: without DATABASE_URL the Postgres cases are reported as skipped, with the reason,
# rather than left out of the count silently.
BACKENDS = ["sqlite", "postgres"]
requires_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="needs DATABASE_URL (real Postgres); .ci/run sets it")
CAPTURE_NOW = datetime(2026, 11, 22, 13, 43, 10, tzinfo=timezone.utc).timestamp()


class AnchoredClock:
    """Real elapsed time, starting from a chosen instant."""

    def __init__(self, start: float):
        self.offset = start - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Jump ahead, as if `seconds` had passed: how a test gets past a wait without sleeping."""
        self.offset += seconds

    def iso(self, delta_s: float = 0) -> str:
        return datetime.fromtimestamp(self() + delta_s, timezone.utc).isoformat().replace("+00:00", "Z")


def wait_until(predicate, timeout: float = 15, interval: float = 0.02, message: str = "condition"):
    """Poll `predicate` until it is truthy; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def clock():
    return AnchoredClock(CAPTURE_NOW)


def machine_clock() -> AnchoredClock:
    """The machine's own time, for modules that start web or worker processes: those keep real
    time, so the sandbox and app beside them must too. Times a day apart from the anchored clock
    are refused as in the future, and 34 days apart as too old."""
    return AnchoredClock(time.time())


@pytest.fixture
def sandbox(clock):
    """The local Metronome on loopback. Every answer it gives, and every batch the worker sends it,
    is checked against Metronome's official schemas (metronome_spec.py); a mismatch fails the test."""
    from metronome_spec import Conformance

    server = SandboxServer(tokens=(TOKEN,), clock=clock)
    conformance = Conformance()
    conformance.attach(server.app)
    server.conformance = conformance
    server.start()
    yield server
    server.state.release.set()
    server.stop()
    assert not conformance.problems, "the sandbox left Metronome's spec:\n" + "\n".join(conformance.problems[:20])


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "postgres" and not POSTGRES_URL:
        pytest.skip("needs DATABASE_URL (real Postgres); .ci/run sets it")
    return request.param


@pytest.fixture
def postgres_schema():
    """A fresh schema in the test database; yields a DATABASE_URL that uses it, then drops it."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={name}')}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def store(backend, tmp_path, request):
    """Where the store lives: `{"database_url": ...}` on Postgres, `{"sqlite_path": ...}` on SQLite."""
    if backend == "postgres":
        return {"database_url": request.getfixturevalue("postgres_schema")}
    return {"sqlite_path": str(tmp_path / "queue.sqlite3")}


def store_env(settings) -> dict:
    """Environment variables that point a subprocess at the same store as `settings`."""
    if settings.database_url:
        return {"DATABASE_URL": settings.database_url}
    return {"SQLITE_PATH": settings.sqlite_path, "DATABASE_URL": ""}


def run_sql(queue, sql: str) -> None:
    with queue._write() as db:
        db.execute(sql)


@pytest.fixture
def settings(tmp_path, sandbox, store):
    return load_settings(env={}, overrides={
        **store,
        "metronome_api_token": TOKEN,
        "metronome_base_url": sandbox.url,
        "mappings_path": str(ROOT / "destination" / "mappings" / "default.json"),
        "write_keys": f"test:{WRITE_KEY}",
        "retry_base_seconds": "0.01",
        "halt_probe_seconds": "0.2",
        "poll_interval_seconds": "0.02",
        "lease_seconds": "2",
    })


@pytest.fixture
def queue(settings):
    q = open_queue(settings)
    yield q
    q.close()


@pytest.fixture
def app(settings, queue, clock):
    return create_app(settings, queue=queue, clock=clock)


@pytest.fixture
def client(app):
    return app.test_client()


class LiveService:
    """The app on a loopback port plus a delivery worker thread, as `serve` runs them."""

    def __init__(self, app, settings, queue, clock):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.worker = build_worker(settings, queue, clock=clock)
        self.queue = queue
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True),
                        threading.Thread(target=self.worker.run, args=(self.stop_event,), daemon=True)]
        self.session = requests.Session()
        self.session.auth = (WRITE_KEY, "")

    def start(self):
        for thread in self.threads:
            thread.start()
        return self

    def post(self, body, **kwargs):
        return self.session.post(self.url + "/v1/events", json=body, timeout=10, **kwargs)

    def close(self):
        self.stop_event.set()
        self.threads[1].join(10)
        self.server.shutdown()
        self.server.server_close()
        self.session.close()


@contextmanager
def live_service(settings, queue, clock, **changes):
    """A LiveService of the app with these settings changed, closed when the block ends."""
    settings = settings.replace(**changes)
    service = LiveService(create_app(settings, queue=queue, clock=clock), settings, queue, clock).start()
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def service(app, settings, queue, clock):
    live = LiveService(app, settings, queue, clock).start()
    yield live
    live.close()


def write_key_header(how: str, key: str = WRITE_KEY) -> dict:
    """The Authorization header a sender uses to present a write key: "basic" (key as user,
    empty password), "basic-no-colon" (no password part at all) or "bearer"."""
    import base64

    if how == "bearer":
        return {"Authorization": f"Bearer {key}"}
    user = f"{key}:" if how == "basic" else key
    return {"Authorization": "Basic " + base64.b64encode(user.encode()).decode()}


BIG, LONG = "12345678901234567890123", "0.1000000000000000055511151231257827"  # numbers past what a double holds


def with_numbers(value, **numbers) -> bytes:
    """JSON of `value` with each "<name>" string replaced by the number literal given for it:
    how a test sends numbers that neither Python's floats nor orjson can write."""
    text = orjson.dumps(value).decode()
    for name, literal in numbers.items():
        text = text.replace(f'"<{name}>"', literal)
    return text.encode()


def track(message_id: str, when: str, customer: str = "cust_1", event: str = "transfer", **properties) -> dict:
    return {"type": "track", "event": event, "messageId": message_id, "userId": customer,
            "timestamp": when, "properties": properties}
