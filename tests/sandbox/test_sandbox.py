"""The sandbox keeps Metronome's ingest contract, over a real loopback socket."""
import gzip

import orjson
import pytest
import requests

from conftest import TOKEN


def event(tid="t1", **changes):
    base = {"transaction_id": tid, "customer_id": "c1", "event_type": "transfer",
            "timestamp": "2026-11-22T12:00:00Z", "properties": {"bytes": "5000"}}
    base.update(changes)
    return base


def ingest(sandbox, body, token=TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(sandbox.url + "/v1/ingest", data=orjson.dumps(body), headers=headers, timeout=5, **kwargs)


def test_accepts_a_batch_with_200_and_an_empty_body(sandbox):
    response = ingest(sandbox, [event("t1"), event("t2")])
    assert (response.status_code, response.content) == (200, b"")
    assert len(sandbox.state.events) == 2


def test_bearer_auth(sandbox):
    assert ingest(sandbox, [event()], token="wrong").status_code == 403
    assert ingest(sandbox, [event()], token=None).status_code == 401
    assert sandbox.state.events == {}


@pytest.mark.parametrize("body, message", [
    ([], "[array is too short: must have between 1 and 100 elements but instance has 0 elements]"),
    ([event(f"t{i}") for i in range(101)], "[array is too long: must have between 1 and 100 elements but instance has 101 elements]"),
    ({"transaction_id": "t"}, "[expected array]"),
])
def test_batch_must_be_an_array_of_1_to_100(sandbox, body, message):
    response = ingest(sandbox, body)
    assert (response.status_code, response.json()) == (400, {"message": message})


@pytest.mark.parametrize("bad", [
    {"customer_id": ""}, {"event_type": None}, {"transaction_id": "x" * 129},
    {"timestamp": "yesterday"}, {"timestamp": "2026-11-25T12:00:00Z"}, {"properties": "x"},
])
def test_one_bad_event_rejects_the_whole_batch(sandbox, bad):
    response = ingest(sandbox, [event("good"), event("bad", **bad)])
    assert response.status_code == 400 and response.json()["message"].startswith("event 1:")
    assert sandbox.state.events == {}


def test_duplicates_are_ignored_by_transaction_id(sandbox):
    ingest(sandbox, [event("t1", properties={"bytes": "5000"})])
    ingest(sandbox, [event("t1", properties={"bytes": "9999"}), event("t2", properties={"bytes": "1000"})])
    totals = requests.get(sandbox.url + "/sandbox/totals", timeout=5).json()
    assert totals == {"c1": {"transfer": {"count": 2, "sums": {"bytes": "6000"}}}}


def test_gzip_bodies(sandbox):
    response = requests.post(sandbox.url + "/v1/ingest", data=gzip.compress(orjson.dumps([event()])),
                             headers={"Authorization": f"Bearer {TOKEN}", "Content-Encoding": "gzip"}, timeout=5)
    assert response.status_code == 200


@pytest.mark.parametrize("tokens, elapsed, wait", [
    (10.0, 0.0, 0.0),  # a full bucket admits
    (1.0, 0.0, 0.0),  # one token left admits
    (0.5, 0.0, 0.01),  # half a token: half of 1/50 s to wait
    (0.0, 0.02, 0.0),  # empty, but a fiftieth of a second refills one
    (0.0, 0.0, 0.02),
])
def test_the_ingest_rate_limit_is_a_token_bucket(tokens, elapsed, wait):
    from destination.sandbox.ingest import take_token

    bucket = {"per_s": 50.0, "burst": 10.0, "tokens": tokens, "at": 100.0}
    assert take_token(bucket, 100.0 + elapsed) == pytest.approx(wait)


def test_a_rate_limit_on_cue_answers_429_with_both_retry_headers_and_lifts(sandbox):
    requests.post(sandbox.url + "/sandbox/faults", json={"rate_limit": {"per_s": 1, "burst": 2}}, timeout=5)
    answers = [ingest(sandbox, [event(f"rl{i}")]) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"] == "1" and 0 < int(answers[2].headers["retry-after-ms"]) <= 1000
    assert answers[2].json()["message"] == "rate limit exceeded (sandbox)"
    requests.post(sandbox.url + "/sandbox/faults", json={"rate_limit": None}, timeout=5)
    assert ingest(sandbox, [event("rl3")]).status_code == 200
    assert sorted(sandbox.state.events) == ["rl0", "rl1", "rl3"]  # the refused one was not kept


@pytest.mark.parametrize("faults, message", [
    ({"rate_limit": {"per_s": "fast"}}, "rate_limit.per_s must be a number from 0.01 to 100000"),
    ({"rate_limit": {"per_s": 0}}, "rate_limit.per_s must be a number from 0.01 to 100000"),
    ({"rate_limit": {"per_s": 5, "burst": 0.5}}, "rate_limit.burst must be a number from 1 to 100000"),
    ({"rate_limit": [50]}, 'rate_limit must be an object like {"per_s": 50, "burst": 10}, or null'),
    ({"latency_s": -1}, "latency_s must be a number from 0 to 60"),
    ({"latency_s": True}, "latency_s must be a number from 0 to 60"),
])
def test_a_bad_fault_is_a_400_that_says_why_and_changes_nothing(sandbox, faults, message):
    answer = requests.post(sandbox.url + "/sandbox/faults", json={**faults, "script": [{"status": 500}]}, timeout=5)
    assert (answer.status_code, answer.json()["message"]) == (400, message)
    assert ingest(sandbox, [event()]).status_code == 200 and sandbox.state.rate_limit is None


def test_a_round_trip_on_cue_holds_each_ingest_answer(sandbox):
    requests.post(sandbox.url + "/sandbox/faults", json={"latency_s": 0.2}, timeout=5)
    answer = ingest(sandbox, [event("slow")])
    assert answer.status_code == 200 and answer.elapsed.total_seconds() >= 0.2


def test_scripted_faults_are_answered_in_order(sandbox):
    requests.post(sandbox.url + "/sandbox/faults", json={"script": [{"status": 503}, {"status": 429, "headers": {"Retry-After": "2"}}]}, timeout=5)
    assert ingest(sandbox, [event()]).status_code == 503
    second = ingest(sandbox, [event()])
    assert (second.status_code, second.headers["Retry-After"]) == (429, "2")
    assert ingest(sandbox, [event()]).status_code == 200
