"""The real client libraries, pointed at a running destination: each sends track, identify and
page, succeeds on its first try (one request, answered 200, no retry, no error callback), and
the track event arrives at the sandbox exactly as Metronome expects it."""
import json
import shutil
import subprocess
import sys
import threading

import pytest

from conftest import ROOT, LiveService, wait_until
from destination.app import create_app

KEYS = {"seg-write-key": "segment", "rudder-write-key": "rudder", "pk_us_cio-write-key": "customerio", "node-write-key": "node"}
NODE_DIR = ROOT / "tests" / "node"


class Recorder:
    """WSGI middleware: every request the SDKs make, with the status we answered."""

    def __init__(self, app):
        self.app, self.seen, self.lock = app, [], threading.Lock()

    def __call__(self, environ, start_response):
        def record(status, headers, exc_info=None):
            with self.lock:
                self.seen.append({"path": environ["PATH_INFO"], "status": int(status.split()[0]),
                                  "encoding": environ.get("HTTP_CONTENT_ENCODING"),
                                  "auth": environ.get("HTTP_AUTHORIZATION", "").split(" ")[0]})
            return start_response(status, headers, exc_info)
        return self.app(environ, record)


@pytest.fixture
def sdk_service(settings, queue, clock, sandbox):
    settings = settings.replace(write_keys=KEYS)
    app = create_app(settings, queue=queue, clock=clock)
    recorder = Recorder(app.wsgi_app)
    app.wsgi_app = recorder
    live = LiveService(app, settings, queue, clock).start()
    live.recorder = recorder
    yield live
    live.close()


def send_with_python_sdk(module: str, write_key: str, host: str, prefix: str, **options) -> list:
    """track + identify + page through one SDK client; returns what its on_error saw."""
    client_class = __import__(module, fromlist=["Client"]).Client
    errors = []
    client = client_class(write_key, host=host, on_error=lambda error, batch: errors.append(repr(error)),
                          max_retries=3, **options)
    client.track(user_id="user_42", event="llm_request", message_id=f"{prefix}-track",
                 properties={"model": "gpt-5", "input_tokens": 1500, "cost": 0.0042})
    client.identify(user_id="user_42", message_id=f"{prefix}-identify", traits={"plan": "pro"})
    client.page(user_id="user_42", message_id=f"{prefix}-page", name="Pricing")
    client.flush()
    client.join()
    return errors


def arrived(sandbox, transaction_id: str) -> dict | None:
    with sandbox.state.lock:
        return sandbox.state.events.get(transaction_id)


def assert_first_try_and_delivered(service, sandbox, prefix: str, encoding: str | None, auth: str, user: str = "user_42",
                                   path: str = "/v1/batch"):
    [request] = service.recorder.seen  # one batch, never retried
    assert request == {"path": path, "status": 200, "encoding": encoding, "auth": auth}
    event = wait_until(lambda: arrived(sandbox, f"{prefix}-track"), message=f"{prefix} at the sandbox")
    assert {k: v for k, v in event.items() if k != "timestamp"} == {
        "transaction_id": f"{prefix}-track", "customer_id": user, "event_type": "llm_request",
        "properties": {"model": "gpt-5", "input_tokens": "1500", "cost": "0.0042"}}
    assert event["timestamp"].endswith("Z") and len(event["timestamp"]) == 24
    assert arrived(sandbox, f"{prefix}-identify") is None and arrived(sandbox, f"{prefix}-page") is None  # filtered
    assert service.queue.dead_letter_count() == 0


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_segment_analytics_python(sdk_service, sandbox, gzip):
    errors = send_with_python_sdk("segment.analytics", "seg-write-key", sdk_service.url, f"seg-{gzip}", gzip=gzip)
    assert errors == []
    assert_first_try_and_delivered(sdk_service, sandbox, f"seg-{gzip}", "gzip" if gzip else None, "Basic")


JUNE_SCRIPT = """
import json, sys
from june.analytics import Client
errors = []
client = Client(sys.argv[1], host=sys.argv[2], on_error=lambda error, batch: errors.append(repr(error)), max_retries=3)
client.track(user_id="user_42", event="llm_request", message_id="june-track",
             properties={"model": "gpt-5", "input_tokens": 1500, "cost": 0.0042})
client.identify(user_id="user_42", message_id="june-identify", traits={"plan": "pro"})
client.page(user_id="user_42", message_id="june-page", name="Pricing")
client.flush()
client.join()
print(json.dumps(errors))
"""


@pytest.fixture(scope="session")
def june_python(tmp_path_factory):
    """June's SDK pins backoff 1.x, which the other SDKs here cannot share, so it gets a venv of its own."""
    venv = tmp_path_factory.mktemp("june") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "june-analytics-python==2.3.0"], check=True,
                   capture_output=True, timeout=300)
    return venv / "bin" / "python"


def test_june_analytics_python_posts_to_sdk_batch_and_is_answered_first_time(sdk_service, sandbox, june_python):
    """June's Python SDK, a Segment fork, posts the same batch to /sdk/batch instead of /v1/batch."""
    sent = subprocess.run([str(june_python), "-c", JUNE_SCRIPT, "seg-write-key", sdk_service.url], check=True,
                          capture_output=True, text=True, timeout=60)
    assert json.loads(sent.stdout) == []
    assert_first_try_and_delivered(sdk_service, sandbox, "june", None, "Basic", path="/sdk/batch")


def test_rudder_sdk_python_which_gzips_by_default(sdk_service, sandbox):
    errors = send_with_python_sdk("rudderstack.analytics", "rudder-write-key", sdk_service.url, "rudder")
    assert errors == []
    assert_first_try_and_delivered(sdk_service, sandbox, "rudder", "gzip", "Basic")


def test_customerio_cdp_analytics_with_a_pk_us_key_sent_as_bearer(sdk_service, sandbox):
    errors = send_with_python_sdk("customerio.analytics", "pk_us_cio-write-key", sdk_service.url, "cio")
    assert errors == []
    assert_first_try_and_delivered(sdk_service, sandbox, "cio", None, "Bearer")


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not on this machine")
def test_segment_analytics_node(sdk_service, sandbox):
    if not (NODE_DIR / "node_modules" / "@segment" / "analytics-node").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, capture_output=True, timeout=300)
    result = subprocess.run(["node", "send.mjs", sdk_service.url, "node-write-key", "node"], cwd=NODE_DIR,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == [] and len(report["requests"]) == 1
    # analytics-node sends no Authorization header: its write key travels in the body's writeKey.
    assert_first_try_and_delivered(sdk_service, sandbox, "node", None, "", user="node_user")
