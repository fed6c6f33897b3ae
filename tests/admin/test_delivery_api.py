"""The Delivery view's JSON: series by window, the queue now, journeys, and the clear 400s of bad searches.
Its chart and search in a browser are in test_delivery_view.py."""
import orjson
import pytest
import requests

from conftest import WRITE_KEY, track, wait_until
from destination.app import create_app
from destination.queue.halt import PAUSED_UNTIL, set_halt

ADMIN = {"Authorization": "Bearer delivery-admin"}


@pytest.fixture
def admin(settings, queue, clock):
    return create_app(settings.replace(admin_tokens={"delivery-admin": "ops"}), queue=queue, clock=clock).test_client()


def send(client, body):
    return client.post("/v1/events", data=orjson.dumps(body), auth=(WRITE_KEY, ""))


@pytest.mark.parametrize("query, code", [
    ("/delivery?window=month", "invalid_window"),
    ("/delivery/journey", "invalid_search"),
    ("/delivery/journey?messageId=a&customer_id=b", "invalid_search"),
    ("/delivery/journey?messageId=%00", "invalid_messageId"),
    ("/delivery/journey?messageId=a&limit=0", "invalid_limit"),
    ("/imports?limit=x", "invalid_limit"),
])
def test_a_bad_query_is_a_clear_400(admin, query, code):
    answer = admin.get("/admin" + query, headers=ADMIN)
    assert answer.status_code == 400 and answer.json["code"] == code and answer.json["message"]


def test_without_a_token_there_is_nothing(admin):
    assert admin.get("/admin/delivery").status_code == 401


@pytest.mark.parametrize("window, buckets, bucket_ms", [("hour", 60, 60_000), ("day", 96, 900_000), ("week", 168, 3_600_000)])
def test_each_window_counts_the_same_events_in_its_own_buckets(admin, clock, window, buckets, bucket_ms):
    events = [track(f"w-{i}", clock.iso()) for i in range(5)] + [{**track("nc", clock.iso()), "userId": None}]
    assert send(admin, events).json["accepted"] == 5
    found = admin.get(f"/admin/delivery?window={window}", headers=ADMIN).json
    assert len(found["starts_ms"]) == buckets and found["bucket_ms"] == bucket_ms
    assert found["totals"] == {"received": 6, "accepted": 5, "filtered": 0, "refused": 1, "delivered": 0,
                                    "retried": 0, "dead_lettered": 0}
    assert found["series"]["received"][-1] == 6  # all in the newest bucket
    assert found["reasons"]["refused"] == [{"reason": "missing_customer_id", "count": 1}]
    assert found["reasons"]["received"] == [{"reason": "http", "count": 6}]


def test_the_queue_now_says_depth_halt_and_pause(admin, queue, clock):
    assert send(admin, [track(f"q-{i}", clock.iso()) for i in range(3)]).json["accepted"] == 3
    now_ms = int(clock() * 1000)
    set_halt(queue, "metronome_403", "Metronome refused the API token", now_ms)
    queue.set_state(PAUSED_UNTIL, str(now_ms + 30_000))
    claim = queue.claim(2, 60_000, now_ms)
    found = admin.get("/admin/delivery/queue", headers=ADMIN).json
    assert found["depth"] == 3 and found["halt"]["code"] == "metronome_403"
    assert found["paused_until_ms"] == now_ms + 30_000
    assert found["claimed"] == {"events": 2, "processes": 1} and len(claim.events) == 2


def test_a_refused_event_is_found_by_its_message_id_and_its_customer(admin, clock):
    refused = {**track("no-customer", clock.iso()), "userId": None, "anonymousId": "anon-7", "event": None}
    assert send(admin, [refused, track("kept", clock.iso(), customer="anon-7")]).json["accepted"] == 1
    by_message = admin.get("/admin/delivery/journey?messageId=no-customer", headers=ADMIN).json
    assert by_message["count"] == 1
    event = by_message["events"][0]
    assert event["fate"] == "dead_lettered" and event["event"]["messageId"] == "no-customer"
    assert [s["step"] for s in event["steps"]] == ["received", "dead_lettered"]
    by_customer = admin.get("/admin/delivery/journey?customer_id=anon-7", headers=ADMIN).json
    assert sorted(e["fate"] for e in by_customer["events"]) == ["dead_lettered", "queued"]
    nothing = admin.get("/admin/delivery/journey?transaction_id=never-sent", headers=ADMIN).json
    assert nothing == {"search": {"transaction_id": "never-sent"}, "events": [], "count": 0}


def test_the_counters_are_pruned_with_the_delivery_log(queue, clock):
    from collections import Counter

    now_ms = int(clock() * 1000)
    day = 86_400_000
    for at in (now_ms - 9 * day, now_ms - 8 * day, now_ms):
        queue.enqueue([], [], at, tally=Counter({("received", "http"): 2}))
    queue.flush_counts()
    assert sum(row[3] for row in queue.delivery_counts(0)) == 6
    queue.prune_delivery_log(now_ms - 7 * day)  # what the worker does with DELIVERY_LOG_DAYS=7
    assert [(row[1], row[3]) for row in queue.delivery_counts(0)] == [("received", 2)]


def test_sends_in_flight_add_up_over_live_processes_and_a_stopped_one_is_forgotten(queue):
    from destination.queue import senders

    now = 10_000_000
    senders.report(queue, "web-1:10", 4, now)
    senders.report(queue, "worker-2:11", 3, now - 5_000)
    senders.report(queue, "web-3:12", 8, now - senders.STALE_MS - 1)  # stopped reporting: not counted
    senders.report(queue, "web_%:13", 1, now)  # LIKE's wildcards in a name are only characters
    assert senders.current(queue, now) == {"in_flight": 8, "processes": 3}
    senders.leave(queue, "web-1:10")
    assert senders.current(queue, now) == {"in_flight": 4, "processes": 2}
    senders.forget_stopped(queue, now - 5_000 + senders.FORGET_MS)  # an hour after worker-2's last report
    assert set(queue.states(senders.PREFIX)) == {"sending:worker-2:11", "sending:web_%:13"}  # the others had stopped
    assert queue.states("sending:web_") == {"sending:web_%:13": queue.get_state("sending:web_%:13")}


def test_a_delivering_process_shows_in_the_queue_view(settings, queue, clock):
    from conftest import live_service

    with live_service(settings, queue, clock, admin_tokens={"delivery-admin": "ops"}) as live:
        live.post([track("s-1", clock.iso())])
        wait_until(lambda: queue.depth() == 0, message="delivery")
        found = requests.get(live.url + "/admin/delivery/queue", headers=ADMIN, timeout=5).json()
    assert found["sending"]["processes"] == 1 and found["depth"] == 0
