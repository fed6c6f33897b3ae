"""HTTP semantics of the receive route: 200 with per-event outcomes, clear 4xx, 503 when unstorable."""
import gzip

import pytest

from conftest import WRITE_KEY, run_sql, track, write_key_header

AUTH = (WRITE_KEY, "")


def post(client, body=None, data=None, auth=AUTH, **kwargs):
    return client.post("/v1/events", json=body, data=data, auth=auth, **kwargs)


def stored(queue):
    return queue.depth() + queue.dead_letter_count()

UNCHECKED = "the billing catalog could not be read from Metronome yet, so this event was not checked"


@pytest.mark.parametrize("shape", ["single", "array", "batch"])
def test_every_body_shape_is_accepted(client, queue, clock, shape):
    event = track("m1", clock.iso())
    body = {"single": event, "array": [event], "batch": {"batch": [event], "sentAt": clock.iso()}}[shape]
    response = post(client, body)
    assert response.status_code == 200
    # BILLING_CHECK is warn by default; no worker has read Metronome's catalog here yet.
    unchecked = {"bills": None, "problems": [{"code": "catalog_unavailable", "message": UNCHECKED}]}
    assert response.json == {"accepted": 1, "filtered": 0, "refused": 0, "events": [
        {"index": 0, "status": "accepted", "messageId": "m1", "transaction_ids": ["m1"], "billing": [unchecked]}]}
    assert queue.depth() == 1


@pytest.mark.parametrize("data, code", [
    (b"{", "malformed_json"), (b"", "malformed_json"), (b"\xff\xfe", "malformed_json"),
    (b"[" * 5000, "malformed_json"), (b'{"a": NaN}', "malformed_json"), (b'{"n": 1e99999, "a": "\\ud800"}', "malformed_json"),
    (b'"just a string"', "invalid_body"), (b"42", "invalid_body"), (b'{"batch": {"not": "a list"}}', "invalid_body"),
])
def test_bad_bodies_get_400_with_code_and_message_and_store_nothing(client, queue, data, code):
    response = post(client, data=data, content_type="application/json")
    assert response.status_code == 400
    assert response.json["code"] == code and response.json["message"]
    assert stored(queue) == 0


@pytest.mark.parametrize("auth, headers", [
    (None, {}), (("wrong-key", ""), {}), (None, {"Authorization": "Bearer wrong"}),
    (None, {"Authorization": "Basic !!notbase64"}),
])
def test_missing_or_wrong_write_key_gets_401_and_stores_nothing(client, queue, clock, auth, headers):
    response = post(client, track("m1", clock.iso()), auth=auth, headers=headers)
    assert response.status_code == 401
    assert set(response.json) == {"code", "message"}
    assert stored(queue) == 0


@pytest.mark.parametrize("how", ["basic", "basic-no-colon", "bearer", "body"])
def test_write_key_from_basic_bearer_or_body(client, queue, clock, how):
    body = {"batch": [track("m1", clock.iso())]}
    headers = {} if how == "body" else write_key_header(how)
    if how == "body":
        body["writeKey"] = WRITE_KEY
    assert post(client, body, auth=None, headers=headers).status_code == 200
    assert queue.depth() == 1


def test_gzip_body_is_inflated(client, queue, clock):
    import orjson

    data = gzip.compress(orjson.dumps([track("m1", clock.iso())]))
    assert post(client, data=data, headers={"Content-Encoding": "gzip"}, content_type="application/json").status_code == 200
    assert queue.depth() == 1


def test_gzip_bomb_gets_413_and_stores_nothing(client, queue):
    bomb = gzip.compress(b"[" + b" " * (20 * 2**20) + b"]")
    response = post(client, data=bomb, headers={"Content-Encoding": "gzip"}, content_type="application/json")
    assert response.status_code == 413 and response.json["code"] == "payload_too_large"
    assert stored(queue) == 0


@pytest.mark.parametrize("data, code", [(b"\x1f\x8b\x08garbage", "invalid_gzip"), (gzip.compress(b"[1,2,3]")[:-6], "invalid_gzip")])
def test_broken_gzip_gets_400(client, queue, data, code):
    response = post(client, data=data, headers={"Content-Encoding": "gzip"}, content_type="application/json")
    assert (response.status_code, response.json["code"]) == (400, code)


def test_oversize_body_gets_413(client, queue, settings):
    response = post(client, data=b" " * (settings.max_request_bytes + 1), content_type="application/json")
    assert response.status_code == 413 and set(response.json) == {"code", "message"}
    assert stored(queue) == 0


def test_too_many_events_gets_413(client, queue, clock, settings):
    response = post(client, [track(f"m{i}", clock.iso()) for i in range(settings.max_batch_events + 1)])
    assert (response.status_code, response.json["code"]) == (413, "too_many_events")
    assert stored(queue) == 0


def test_an_unwritable_queue_gets_503_with_retry_after(client, queue, clock):
    run_sql(queue, "DROP TABLE dead_letters")  # every enqueue now fails mid-transaction
    response = post(client, [track("m1", clock.iso()), {"type": "track"}])
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json["code"] == "queue_unavailable"
    assert queue.depth() == 0  # the whole request rolled back: the sender's retry brings it all


def test_unknown_event_types_are_answered_200_as_filtered(client, queue):
    response = post(client, [{"type": "delete", "userId": "u"}, {"type": "brand_new", "userId": "u"}])
    assert response.status_code == 200 and response.json["filtered"] == 2


def test_sampling_takes_every_request_at_first_then_one_per_interval():
    from destination.intake.pipeline import Sampler

    sampler = Sampler(warmup=3, interval_ms=100)
    assert [sampler.take(1000) for _ in range(3)] == [True, True, True]  # warm-up: timing ignored
    assert [sampler.take(t) for t in (1000, 1099, 1100, 1150, 1250)] == [False, False, True, False, True]
    assert sampler.take(900)  # a clock that stepped back never silences sampling


def test_unsampled_requests_still_store_every_event(app, client, queue, clock):
    from destination.intake.pipeline import Sampler

    app.extensions["destination"].sampler = Sampler(warmup=2, interval_ms=3_600_000)
    for i in range(5):
        assert post(client, track(f"s{i}", clock.iso())).status_code == 200
    assert queue.depth() == 5
    assert len(queue.recent_events(50)) == 2


@pytest.mark.parametrize("field, code", [("messageId", "invalid_transaction_id"), ("userId", "invalid_customer_id"),
                                         ("event", "invalid_event_type")])
def test_a_nul_in_an_id_refuses_that_event_only(client, queue, clock, field, code):
    # Postgres text cannot hold NUL: stored, it failed the whole request with a 503 on every retry.
    bad = {**track("nul-1", clock.iso()), field: "a\u0000b"}
    response = post(client, [bad, track("fine-1", clock.iso(), note="x\u0000y")])
    assert response.status_code == 200
    assert [e["status"] for e in response.json["events"]] == ["refused", "accepted"]
    assert response.json["events"][0]["errors"][0]["code"] == code
    assert queue.depth() == 1 and queue.dead_letter_count() == 1


def test_a_nul_in_a_message_id_the_mapping_does_not_use_is_stored_unsearchable(queue, clock):
    from destination.intake.pipeline import process_events
    from destination.mapping.mapping_set import compile_mapping_set
    from destination.payload.validate import Limits

    mappings = compile_mapping_set({"mappings": [{
        "name": "hashed id", "trigger": {"path": "$.type", "equals": "track"},
        "fields": {"transaction_id": {"hash": ["$.messageId"]}, "customer_id": {"path": "$.userId"},
                   "event_type": {"path": "$.event"}, "timestamp": {"path": "$.timestamp"}}}]}, "v-test")
    processed = process_events([track("a\u0000b", clock.iso())], mappings, int(clock() * 1000), Limits())
    assert processed.counts["accepted"] == 1 and processed.rows[0].message_id is None
    assert queue.enqueue(processed.rows, [], int(clock() * 1000)) == 1
