"""Speaking every sender's language: the Tracking-API routes, batch-level fields, clock-skew
correction, webhook signatures and secrets, and body limits. Every refusal stores nothing."""
import gzip
import hashlib
import hmac
import json
import time
import tracemalloc
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from conftest import DATA, WRITE_KEY, track
from destination.app import create_app
from destination.intake.parse import Envelope, expand
from destination.intake.pipeline import BATCH_PATHS, SINGLE_PATHS

AUTH = (WRITE_KEY, "")
VECTORS = json.loads((DATA / "signatures.json").read_text())
SECRET = VECTORS["secret"]
ALL_TRACKING_PATHS = [*BATCH_PATHS, *(p for paths in SINGLE_PATHS.values() for p in paths)]


def stored(queue):
    return queue.depth() + queue.dead_letter_count()


def payloads(queue):
    return [orjson.loads(e.payload) for e in queue.claim(10_000, 60_000, int(time.time() * 1000) + 10**9).events]


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def webhook_client(settings, queue, clock):
    settings = settings.replace(webhook_secrets={SECRET: "segment", "second-secret-rotating-in": "segment-new",
                                                 "rudder-static-secret": "rudder"})
    return create_app(settings, queue=queue, clock=clock).test_client()


# -- Tracking-API routes ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ALL_TRACKING_PATHS + ["/v1/events"])
@pytest.mark.parametrize("slash", ["", "/"])
def test_every_tracking_route_accepts_with_or_without_a_trailing_slash(client, queue, clock, path, slash):
    event = track("m1", clock.iso())
    body = {"batch": [event]} if path in BATCH_PATHS else event
    response = client.post(path + slash, data=orjson.dumps(body), auth=AUTH, content_type="text/plain")
    assert response.status_code == 200 and response.is_json
    assert stored(queue) == 1


@pytest.mark.parametrize("kind, paths", SINGLE_PATHS.items())
def test_a_single_event_route_supplies_the_type(client, queue, clock, kind, paths):
    event = track("m1", clock.iso())
    del event["type"]
    for path in paths:
        response = client.post(path, json=event, auth=AUTH)
        assert response.status_code == 200
        expected = "accepted" if kind == "track" else "filtered"  # the default mapping bills track only
        assert response.json["events"][0]["status"] == expected


def test_each_source_has_a_label_that_mapping_triggers_can_test(settings, queue, clock):
    settings = settings.replace(write_keys={"web-key": "web", "mobile-key": "mobile"},
                                mappings_path=str(DATA / "mappings_by_source.json"))
    client = create_app(settings, queue=queue, clock=clock).test_client()
    body = {"batch": [track("m1", clock.iso())], "context": {"groupId": "org_7"}}
    assert client.post("/v1/batch", json=body, auth=("web-key", "")).json["filtered"] == 1
    assert client.post("/v1/batch", json=body, auth=("mobile-key", "")).json["accepted"] == 1
    [usage] = payloads(queue)
    assert usage["customer_id"] == "org_7"  # from the batch-level context, merged into the event


def test_batch_context_and_integrations_merge_into_events_whose_own_values_win():
    envelope = Envelope([{"type": "track", "context": {"ip": "1.1.1.1", "locale": "fr"}}, {"type": "track", "sentAt": "own"},
                         "not an event"],
                        context={"locale": "en", "library": {"name": "x"}}, integrations={"All": True},
                        sent_at="2026-11-22T10:00:00Z")
    first, second, third = expand(envelope)
    assert first["context"] == {"locale": "fr", "library": {"name": "x"}, "ip": "1.1.1.1"}
    assert first["integrations"] == {"All": True} and first["sentAt"] == "2026-11-22T10:00:00Z"
    assert second["sentAt"] == "own" and second["context"] == {"locale": "en", "library": {"name": "x"}}
    assert third == "not an event"


NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
NOW_MS = int(NOW.timestamp() * 1000)


@pytest.mark.parametrize("event, sent_at, expected", [
    # The device clock is an hour fast; the event waited 10 s on the device before sending.
    ({"timestamp": iso(NOW + timedelta(minutes=60) - timedelta(seconds=10))}, iso(NOW + timedelta(minutes=60)), NOW - timedelta(seconds=10)),
    # originalTimestamp stands in when there is no timestamp.
    ({"originalTimestamp": iso(NOW - timedelta(hours=2))}, iso(NOW - timedelta(hours=2) + timedelta(seconds=3)), NOW - timedelta(seconds=3)),
    # Without sentAt the event's own time is used; without any time, the receipt time.
    ({"timestamp": "2026-11-20T08:00:00.5Z"}, None, datetime(2026, 11, 20, 8, 0, 0, 500000, tzinfo=timezone.utc)),
    ({}, iso(NOW), NOW),
    # Sent the moment it happened: the receipt time, whatever the device clock said.
    ({"timestamp": "2026-11-22T13:00:00.000Z"}, "2026-11-22T13:00:00.000Z", NOW),
    # Times millennia apart leave no year to write: the event's own time stands, for validation to judge.
    ({"timestamp": "0001-01-01T00:00:00.000Z"}, "9999-12-31T00:00:00.000Z", datetime(1, 1, 1, tzinfo=timezone.utc)),
])
def test_clock_skew_is_corrected_as_segment_does(event, sent_at, expected):
    [out] = expand(Envelope([{"type": "track", **event}], sent_at=sent_at), received_ms=NOW_MS)
    assert out["timestamp"] == iso(expected)
    assert out["receivedAt"] == iso(NOW)
    if "timestamp" in event:
        assert out["originalTimestamp"] == event["timestamp"]  # the device's own time is kept


GARBAGE_TIMES = ["garbage", "2026-13-45T00:00:00Z", "", True, 1e20, "٢٠٢٦-١١-٢٢T13:00:00Z"]


# /v1/events takes events as sent: it reads the timestamp alone, no sentAt or originalTimestamp.
TIME_FIELDS = [(path, field) for path in ["/v1/batch", "/v1/import", "/v1/track", "/v1/t", "/v1/page", "/v1/events"]
               for field in ["timestamp", "sentAt", "originalTimestamp"] if path != "/v1/events" or field == "timestamp"]


@pytest.mark.parametrize("path, field", TIME_FIELDS)
@pytest.mark.parametrize("value", GARBAGE_TIMES, ids=repr)
def test_a_time_that_is_there_but_not_a_time_is_refused_on_every_route_and_kept(client, queue, clock, path, field, value):
    """Missing is not invalid: a missing time may default to the receipt time, but a garbage one
    billed at the receipt time would be a guess. Refused as invalid_timestamp, kept as a dead letter."""
    event = {**track("bad", clock.iso()), field: value}
    if field == "originalTimestamp":
        del event["timestamp"]  # it stands in for a missing timestamp
    good = track("good", clock.iso())
    body = {"batch": [event, good]} if path in BATCH_PATHS else event
    answer = client.post(path, data=orjson.dumps(body), auth=AUTH, content_type="application/json")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    first = answer.json["events"][0]
    assert first["status"] == "refused" and first["errors"][0]["code"] in ("invalid_timestamp", "missing_timestamp")
    if path != "/v1/events":
        assert first["errors"][0]["code"] == "invalid_timestamp" and first["errors"][0]["message"].startswith(f"{field}: ")
    [letter] = queue.find_dead_letters(limit=10)
    assert orjson.loads(letter["raw"])[field] == value  # kept as it came
    if path in BATCH_PATHS:
        assert answer.json["accepted"] == 1 and [p["transaction_id"] for p in payloads(queue)] == ["good"]


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track"])
def test_a_missing_timestamp_still_defaults_to_the_receipt_time(client, queue, clock, path):
    event = track("no-time", clock.iso())
    del event["timestamp"]
    body = {"batch": [event]} if path in BATCH_PATHS else event
    assert client.post(path, data=orjson.dumps(body), auth=AUTH).json["accepted"] == 1
    [sent] = payloads(queue)
    received = datetime.fromisoformat(sent["timestamp"].replace("Z", "+00:00"))
    assert abs(received.timestamp() - clock()) < 2


def test_skew_correction_applies_to_sdk_routes_not_to_webhooks_or_events(client, webhook_client, queue, clock):
    fast = datetime.fromtimestamp(clock(), timezone.utc) + timedelta(hours=1)  # a device an hour ahead
    event = {**track("sdk", iso(fast - timedelta(seconds=5))), "sentAt": iso(fast)}
    client.post("/v1/batch", json={"batch": [event]}, auth=AUTH)
    client.post("/v1/events", json={**event, "messageId": "plain"}, auth=AUTH)
    body = orjson.dumps({**event, "messageId": "hook"})
    webhook_client.post("/v1/webhook", data=body, headers={"X-Signature": hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()})
    by_id = {p["transaction_id"]: p["timestamp"] for p in payloads(queue)}
    corrected = datetime.fromisoformat(by_id["sdk"].replace("Z", "+00:00"))
    assert abs((corrected - datetime.fromtimestamp(clock(), timezone.utc)).total_seconds() + 5) < 2
    assert by_id["plain"] == by_id["hook"] == iso(fast - timedelta(seconds=5))  # trusted as sent


# -- webhooks --------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_signature_vectors_made_with_nodes_crypto(webhook_client, queue, case):
    response = webhook_client.post("/v1/webhook", data=case["body"].encode(), headers={"X-Signature": case["signature"]},
                                   content_type="application/json")
    if case["valid"]:
        assert response.status_code == 200
        assert queue.depth() == len(orjson.loads(case["body"])) if case["body"].startswith("[") else 1
    else:
        assert (response.status_code, response.json["code"]) == (401, "invalid_signature")
        assert stored(queue) == 0


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_webhooks_accept_post_put_and_patch_with_one_event_or_an_array(webhook_client, queue, clock, method):
    first = track("w2", clock.iso())
    one = orjson.dumps(track("w1", clock.iso()))
    many = orjson.dumps([first, track("w3", clock.iso())])
    for body, signed in ((one, one), (many, orjson.dumps(first))):  # an array is signed on its first element
        response = webhook_client.open("/v1/webhook/", method=method, data=body, headers={"X-Signature": sign(signed)})
        assert response.status_code == 200
    assert queue.depth() == 3


def test_a_batch_is_verified_on_the_raw_bytes_of_its_first_element(webhook_client, queue):
    # Python would re-serialize 1.5e-7 as 1.5e-07; the signature covers the sender's own bytes.
    first = b'{"type":"track","event":"x","messageId":"r1","userId":"u","timestamp":"2026-11-22T10:00:00Z","properties":{"tiny":1.5e-7,"s":"]},["}}'
    body = b"[ " + first + b' ,\n {"type":"track","event":"x","messageId":"r2","userId":"u","timestamp":"2026-11-22T10:00:00Z"}]'
    assert webhook_client.post("/v1/webhook", data=body, headers={"X-Signature": sign(first)}).status_code == 200
    assert webhook_client.post("/v1/webhook", data=body, headers={"X-Signature": sign(body)}).status_code == 401


@pytest.mark.parametrize("headers, code", [
    ({"X-Signature": "0" * 40}, "invalid_signature"),
    ({"X-Signature": "not hex at all é"}, "invalid_signature"),
    ({"X-Webhook-Secret": "guess"}, "invalid_secret"),
    ({}, "unsigned"),
    ({"Authorization": f"Basic {WRITE_KEY}"}, "unsigned"),  # write keys do not open the webhook route
])
def test_wrong_or_missing_signatures_get_401_and_store_nothing(webhook_client, queue, clock, headers, code):
    response = webhook_client.post("/v1/webhook", data=orjson.dumps(track("w1", clock.iso())), headers=headers)
    assert (response.status_code, response.json["code"]) == (401, code)
    assert set(response.json) == {"code", "message"}
    assert stored(queue) == 0


def test_a_tampered_body_is_refused(webhook_client, queue, clock):
    body = orjson.dumps(track("w1", clock.iso(), tokens=10))
    response = webhook_client.post("/v1/webhook", data=body.replace(b"10", b"99"), headers={"X-Signature": sign(body)})
    assert response.status_code == 401 and stored(queue) == 0


def test_both_secrets_work_during_a_rotation(webhook_client, queue, clock):
    for i, secret in enumerate((SECRET, "second-secret-rotating-in")):
        body = orjson.dumps(track(f"rot{i}", clock.iso()))
        assert webhook_client.post("/v1/webhook", data=body, headers={"X-Signature": sign(body, secret)}).status_code == 200
    assert queue.depth() == 2


def test_senders_that_cannot_sign_send_the_static_secret_header(webhook_client, queue, clock):
    response = webhook_client.post("/v1/webhook", json=track("st1", clock.iso()), headers={"X-Webhook-Secret": "rudder-static-secret"})
    assert response.status_code == 200 and queue.depth() == 1


def test_a_default_install_accepts_no_unauthenticated_webhooks(client, queue, clock, settings):
    response = client.post("/v1/webhook", json=track("u1", clock.iso()))
    assert (response.status_code, response.json["code"]) == (401, "webhook_disabled")
    assert stored(queue) == 0
    open_app = create_app(settings.replace(allow_unauthenticated=True), queue=queue, clock=clock).test_client()
    assert open_app.post("/v1/webhook", json=track("u1", clock.iso())).status_code == 200  # only when turned on


# -- bodies and limits -----------------------------------------------------------------------------

def test_a_50mb_gzip_bomb_gets_413_with_memory_flat(client, queue):
    bomb = gzip.compress(b"\0" * (50 * 2**20), compresslevel=9)
    tracemalloc.start()
    began = time.perf_counter()
    response = client.post("/v1/batch", data=bomb, headers={"Content-Encoding": "gzip"}, auth=AUTH)
    elapsed = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (response.status_code, response.json["code"]) == (413, "payload_too_large")
    assert peak < 8 * 2**20, f"peak Python allocation {peak / 2**20:.1f} MiB while refusing a 50 MB bomb"
    assert stored(queue) == 0
    print(f"\n50 MB gzip bomb ({len(bomb)} bytes compressed): 413 in {elapsed * 1000:.0f} ms, peak {peak / 2**20:.2f} MiB")


def test_a_single_event_over_the_event_limit_gets_413(client, queue, clock, settings):
    big = track("big", clock.iso(), blob="x" * settings.max_event_bytes)
    response = client.post("/v1/track", json=big, auth=AUTH)
    assert (response.status_code, response.json["code"]) == (413, "event_too_large")
    assert stored(queue) == 0


def test_in_a_batch_an_oversized_event_is_refused_alone_and_kept(client, queue, clock, settings):
    body = {"batch": [track("ok", clock.iso()), track("big", clock.iso(), blob="x" * settings.max_event_bytes)]}
    response = client.post("/v1/batch", json=body, auth=AUTH)
    assert response.status_code == 200
    assert [e["status"] for e in response.json["events"]] == ["accepted", "refused"]
    assert response.json["events"][1]["errors"][0]["code"] == "event_too_large"
    [letter] = queue.list_dead_letters()
    assert letter["code"] == "event_too_large" and b'"messageId":"big"' in letter["raw"]  # kept whole, replayable
    assert queue.depth() == 1


@pytest.mark.parametrize("setting, value", [("max_request_bytes", 2048), ("max_event_bytes", 300), ("max_batch_events", 3)])
def test_limits_are_configurable(settings, queue, clock, setting, value):
    client = create_app(settings.replace(**{setting: value}), queue=queue, clock=clock).test_client()
    events = [track(f"l{i}", clock.iso(), pad="p" * 200) for i in range(12)]
    response = client.post("/v1/batch", json={"batch": events} if setting != "max_event_bytes" else events[0], auth=AUTH)
    assert response.status_code == 413 and set(response.json) == {"code", "message"}
    assert stored(queue) == 0
