"""What operators rely on: /readyz with reasons, /metrics that agree with what happened, the
delivery-log search in the admin API, request ids and redacted JSON logs."""
import io
import logging

import orjson
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from conftest import WRITE_KEY, track, wait_until
from destination.app import create_app
from destination.ops import logs
from destination.queue.halt import HALT
from destination.queue.postgres import PostgresQueue
from destination.startup import platform_warnings

ADMIN = "admin-token-one"


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def post(client, body, **kwargs):
    return client.post("/v1/events", data=orjson.dumps(body), auth=(WRITE_KEY, ""), **kwargs)


# -- /readyz -------------------------------------------------------------------------------------

def test_ready_when_the_store_answers_and_nothing_is_stuck(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"database": {"ok": True}, "metronome": {"ok": True},
                                       "delivery": {"ok": True, "oldest_pending_age_s": 0.0}}


def test_not_ready_while_metronome_refuses_our_token(client, queue):
    queue.set_state(HALT, orjson.dumps({"code": "metronome_auth", "reason": "Metronome answered 401", "since_ms": 5}).decode())
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json["status"] == "not_ready"
    assert response.json["checks"]["metronome"] == {
        "ok": False, "code": "metronome_auth", "reason": "delivery halted since 5: Metronome answered 401"}


def test_not_ready_when_the_oldest_event_waits_too_long(settings, queue, clock):
    app = create_app(settings.replace(ready_max_pending_age_seconds=60), queue=queue, clock=clock)
    assert post(app.test_client(), track("m1", clock.iso())).status_code == 200  # nothing delivers it
    later = create_app(settings.replace(ready_max_pending_age_seconds=60), queue=queue, clock=lambda: clock() + 61)
    response = later.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["delivery"]["ok"] is False
    assert "limit 60s" in response.json["checks"]["delivery"]["reason"]


def test_not_ready_when_the_database_is_unreachable(settings, clock):
    """A real Postgres client pointed at a closed loopback port: /readyz says so, /healthz stays up."""
    queue = PostgresQueue("postgresql://postgres@127.0.0.1:9/none", migrate=False, pool_timeout_s=0.5)
    try:
        client = create_app(settings, queue=queue, clock=clock).test_client()
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json["checks"]["database"] == {"ok": False, "reason": "database unreachable: PoolTimeout"}
        assert client.get("/healthz").status_code == 200
        refused = post(client, track("m1", "2026-11-22T00:00:00Z"))
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"  # the sender keeps it
    finally:
        queue.close()


# -- /metrics ------------------------------------------------------------------------------------

def test_metrics_count_every_event_by_outcome_and_reason(client, clock):
    before = {name: metric(name, **labels) for name, labels in [
        ("destination_events_received_total", {"source": "test"}),
        ("destination_events_accepted_total", {"source": "test"}),
        ("destination_events_filtered_total", {"source": "test"}),
        ("destination_events_refused_total", {"reason": "missing_customer_id"}),
        ("destination_requests_refused_total", {"code": "unauthorized"}),
    ]}
    body = [track("a1", clock.iso()), track("a2", clock.iso()), {"type": "identify", "userId": "u"},
            {"type": "track", "event": "x", "messageId": "n1", "timestamp": clock.iso()}]
    assert post(client, body).status_code == 200
    assert client.post("/v1/events", json=body, auth=("wrong", "")).status_code == 401
    after = lambda name, **labels: metric(name, **labels) - before[name]
    assert after("destination_events_received_total", source="test") == 4
    assert after("destination_events_accepted_total", source="test") == 2
    assert after("destination_events_filtered_total", source="test") == 1
    assert after("destination_events_refused_total", reason="missing_customer_id") == 1
    assert after("destination_requests_refused_total", code="unauthorized") == 1


def test_metrics_page_shows_queue_gauges_from_the_store(client, clock):
    post(client, [track(f"g{i}", clock.iso()) for i in range(3)] + [{"type": "track", "event": "x", "timestamp": clock.iso()}])
    page = client.get("/metrics")
    assert page.status_code == 200 and page.content_type.startswith("text/plain")
    lines = page.get_data(as_text=True).splitlines()
    assert "destination_queue_depth 3.0" in lines
    assert "destination_dead_letters 1.0" in lines
    assert "destination_delivery_halted 0.0" in lines
    assert any(line.startswith("destination_oldest_pending_age_seconds ") for line in lines)


def test_delivery_metrics_follow_metronomes_answers(service, sandbox, clock):
    delivered = metric("destination_events_delivered_total")
    ok = metric("destination_metronome_responses_total", status="200")
    retried = metric("destination_delivery_retries_total", status="500")
    latency = metric("destination_delivery_latency_seconds_count")
    sandbox.state.script.extend([{"status": 500}])
    service.post([track(f"d{i}", clock.iso()) for i in range(5)])
    wait_until(lambda: service.queue.depth() == 0, message="delivery")
    assert metric("destination_events_delivered_total") - delivered == 5
    assert metric("destination_metronome_responses_total", status="200") - ok == 1
    assert metric("destination_delivery_retries_total", status="500") - retried == 1
    assert metric("destination_delivery_latency_seconds_count") - latency == 5


def test_the_send_window_and_each_cut_with_its_reason_reach_metrics_and_the_log(service, sandbox, clock, caplog):
    cuts = metric("destination_send_window_cuts_total", reason="5xx")
    sandbox.state.script.extend([{"status": 503}])
    with caplog.at_level(logging.INFO, logger="destination.worker"):
        service.post([track(f"w{i}", clock.iso()) for i in range(5)])
        wait_until(lambda: service.queue.depth() == 0, message="delivery")
    assert metric("destination_send_window_cuts_total", reason="5xx") - cuts == 1
    assert metric("destination_send_window") == service.worker.window.size >= 1
    # Only the 503's cut: on a loaded machine the next answer's round trip may also cut, for "rtt".
    [line] = [r for r in caplog.records if r.getMessage().startswith("send window") and r.fields["reason"] == "5xx"]
    assert line.getMessage() == "send window 4 -> 2 (rate free): 5xx"  # 4 cut to 2.8: two requests
    assert line.fields == {"window": 2, "reason": "5xx", "rate": None}


# -- the delivery log through /admin ---------------------------------------------------------------

@pytest.fixture
def admin_service(settings, queue, clock, sandbox):
    from conftest import LiveService

    settings = settings.replace(admin_tokens={ADMIN: "alice", "admin-token-two": "bob"})
    live = LiveService(create_app(settings, queue=queue, clock=clock), settings, queue, clock).start()
    yield live
    live.close()


def test_deliveries_are_searchable_by_message_id_transaction_id_and_customer(admin_service, sandbox, clock):
    sandbox.state.script.extend([{"status": 503}])
    admin_service.post([track("s1", clock.iso(), customer="cust_9", tokens=7), track("s2", clock.iso())])
    wait_until(lambda: admin_service.queue.depth() == 0, message="delivery")
    search = lambda **params: requests.get(admin_service.url + "/admin/deliveries", params=params,
                                           headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5)
    found = search(messageId="s1").json()["deliveries"]
    assert [(d["outcome"], d["status"], d["attempt"]) for d in found] == [("delivered", 200, 2), ("retry", 503, 1)]
    assert found[0]["payload"]["properties"] == {"tokens": "7"} and found[0]["customer_id"] == "cust_9"
    assert [d["message_id"] for d in search(customer_id="cust_9").json()["deliveries"]] == ["s1", "s1"]
    assert search(transaction_id="s2").json()["count"] == 2
    assert search(limit="0").status_code == 400


@pytest.mark.parametrize("authorization, status, code", [
    (None, 401, "unauthorized"), ("Bearer nope", 401, "unauthorized"), (f"Basic {ADMIN}", 401, "unauthorized"),
    (f"Bearer {ADMIN}", 200, None), ("Bearer admin-token-two", 200, None),  # rotation: both work
])
def test_the_admin_api_needs_one_of_the_admin_tokens(admin_service, authorization, status, code):
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.get(admin_service.url + "/admin/deliveries", headers=headers, timeout=5)
    assert response.status_code == status
    if code:
        assert response.json()["code"] == code and "message" in response.json()


def test_the_admin_api_is_off_without_admin_tokens(client):
    response = client.get("/admin/deliveries", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 401 and response.json["code"] == "admin_disabled"


# -- logs ----------------------------------------------------------------------------------------

@pytest.fixture
def captured_logs():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_each_request_logs_one_json_line_with_its_request_id(client, clock, captured_logs):
    response = post(client, track("r1", clock.iso()), headers={"X-Request-Id": "req-abc-123"})
    assert response.headers["X-Request-Id"] == "req-abc-123"
    generated = post(client, track("r2", clock.iso()), headers={"X-Request-Id": "bad id with spaces"})
    assert len(generated.headers["X-Request-Id"]) == 32
    lines = [orjson.loads(line) for line in captured_logs.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "destination.access"]
    assert [(a["request_id"], a["status"], a["msg"]) for a in access] == [
        ("req-abc-123", 200, "POST /v1/events 200"), (generated.headers["X-Request-Id"], 200, "POST /v1/events 200")]


@pytest.mark.parametrize("text, expected", [
    ("token is sk_live_12345", "token is [redacted]"),
    ("Authorization: Bearer abc.def-ghi", "Authorization: [redacted]"),
    ("sent Bearer abc.def-ghi", "sent Bearer [redacted]"),
    ("got Basic dGVzdC13cml0ZS1rZXk6 here", "got Basic [redacted] here"),
    ('{"authorization": "Basic xyz"}', '{"authorization": "[redacted]"}'),
    ("postgresql://app:hunter2@db:5432/x", "postgresql://app:[redacted]@db:5432/x"),
    ("Basic auth value is not base64", "Basic auth value is not base64"),  # words are not credentials
])
def test_redaction_masks_secrets_and_credentials(text, expected):
    logs._secrets[:] = ["sk_live_12345"]
    try:
        assert logs.redact(text) == expected
    finally:
        logs._secrets[:] = []


def _redact_every_pattern(text: str) -> str:
    """The rule before the keyword prefilter: every pattern on every line."""
    for secret in logs._secrets:
        text = text.replace(secret, logs.MASK)
    text = logs._URL_PASSWORD.sub(r"\1" + logs.MASK + "@", text)
    for _, pattern in logs._CREDENTIALS:
        text = pattern.sub(r"\1" + logs.MASK, text)
    return text


@given(st.lists(st.sampled_from(["Bearer ", "bAsIc ", "Authorization", ": ", "=", '"', "://u:", "p@", "dGVzdC13cml0ZS1r",
                                 "abc.def", " ", "\n", "ſ", "K", "ı", "İ", "BASİC ", "baſic ", "sk_live_1"]), max_size=12).map("".join))
def test_the_keyword_prefilter_redacts_exactly_what_every_pattern_would(text):
    logs._secrets[:] = ["sk_live_1"]
    try:
        assert logs.redact(text) == _redact_every_pattern(text)
    finally:
        logs._secrets[:] = []


def test_a_dyno_without_database_url_warns_that_events_can_be_lost(settings):
    [warning] = platform_warnings(settings.replace(database_url=""), {"DYNO": "web.1"})
    assert "ACCEPTED EVENTS CAN BE LOST" in warning
    assert platform_warnings(settings.replace(database_url="postgresql://x/y"), {"DYNO": "web.1"}) == []
    assert platform_warnings(settings.replace(database_url=""), {}) == []
