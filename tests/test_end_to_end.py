"""Through HTTP end to end: CDP -> our server -> queue -> worker -> sandbox Metronome."""
import base64
import gzip
import json

import requests

from conftest import DATA, track, wait_until


def sandbox_events(sandbox):
    return requests.get(sandbox.url + "/sandbox/events", timeout=5).json()["events"]


def test_metronomes_integration_check_two_of_three_and_6000_bytes(service, sandbox, clock):
    when = clock.iso(-60)
    response = service.post([track("transfer-1", when, bytes=5000), track("transfer-1", when, bytes=5000),
                             track("transfer-2", when, bytes=1000)])
    assert response.status_code == 200
    assert response.json()["accepted"] == 3
    wait_until(lambda: len(sandbox_events(sandbox)) == 2 and service.queue.depth() == 0, message="two events at the sandbox")
    # The repeat travels with its transaction_id, and Metronome (here the sandbox) ignores it.
    assert sandbox.state.duplicates == 1
    totals = requests.get(sandbox.url + "/sandbox/totals", timeout=5).json()
    assert totals == {"cust_1": {"transfer": {"count": 2, "sums": {"bytes": "6000"}}}}


def _captured_track_request():
    capture = json.loads((DATA / "sdk-wire-requests.json").read_text())
    return next(r for r in capture["requests"] if r["client"] == "segment-analytics-python-gzip"
                and b"track" in gzip.decompress(base64.b64decode(r["body_base64"])))


def test_captured_sdk_track_event_arrives_exactly_as_metronome_expects(service, sandbox, settings):
    captured = _captured_track_request()
    body = base64.b64decode(captured["body_base64"])
    headers = {k: v for k, v in captured["headers"].items() if k in ("Content-Type", "Content-Encoding")}
    response = requests.post(service.url + "/v1/events", data=body, timeout=5,
                             headers={**headers, "Authorization": "Basic " + base64.b64encode(b"test-write-key:").decode()})
    assert response.status_code == 200, response.text
    [arrived] = wait_until(lambda: sandbox_events(sandbox), message="the captured event at the sandbox")
    assert arrived == {
        "transaction_id": "segment-analytics-python-gzip-track-1",
        "customer_id": "user_42",
        "event_type": "llm_request",
        "timestamp": "2026-11-20T12:30:00.123Z",
        "properties": {"model": "gpt-5", "input_tokens": "1500", "cost": "0.0042", "region": "us-east-1"},
    }


def test_every_event_is_accounted_for_received_equals_filtered_refused_delivered(service, sandbox, clock):
    when = clock.iso(-60)
    good = [track(f"good-{i}", when, customer=f"c{i % 3}", tokens=i) for i in range(40)]
    metronome_rejects = [track(f"rejected-{i}", when) for i in range(3)]
    filtered = [{"type": "identify", "userId": "u", "messageId": f"id-{i}"} for i in range(5)]
    refused = ([{"type": "track", "event": "x", "messageId": f"nocust-{i}", "timestamp": when} for i in range(4)]
               + [track("stale", clock.iso(-40 * 86400)), track("future", clock.iso(3 * 86400)), "not an event"])
    requests.post(sandbox.url + "/sandbox/faults", json={"reject_transaction_ids": [e["messageId"] for e in metronome_rejects]}, timeout=5)
    received = good + metronome_rejects + filtered + refused
    answer = service.post(received).json()
    assert (answer["accepted"], answer["filtered"], answer["refused"]) == (43, 5, 7)
    wait_until(lambda: service.queue.depth() == 0, message="the queue to drain")
    delivered = len(sandbox_events(sandbox))
    dead = service.queue.list_dead_letters(1000)
    assert delivered == 40
    assert len(dead) == 10 and sorted(d["code"] for d in dead).count("metronome_400") == 3
    assert len(received) == answer["filtered"] + len(dead) + delivered


def test_refused_event_is_kept_whole_with_reason_and_mapping_version(service, clock):
    event = {"type": "track", "event": "x", "messageId": "m-9", "timestamp": clock.iso(), "properties": {"n": 1e21}}
    result = service.post(event).json()
    assert result["events"][0]["errors"][0]["code"] == "missing_customer_id"
    [letter] = service.queue.list_dead_letters()
    assert json.loads(letter["raw"]) == event
    assert letter["mapping_version"] == "v1"  # the seeded first version of the stored mappings
    assert (letter["stage"], letter["code"]) == ("receive", "missing_customer_id")
