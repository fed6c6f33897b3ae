"""Will it bill? The check at the door, against the emulator's catalog over real HTTP."""
from datetime import datetime

import pytest
import requests

from conftest import LiveService, track, wait_until
from destination.app import create_app
from destination.sandbox.seed import load_seed, read_seed
from metronome_api import Api

ADMIN = {"Authorization": "Bearer admin-token"}
TRANSFER = "5e2d1c0b-0000-4000-8000-000000000001"
GUIDE_CUSTOMER = "5e2d1c0b-0000-4000-8000-000000000031"


@pytest.fixture
def settings(settings):
    """The suite's settings, with a catalog that refreshes every second and customers looked up at once."""
    return settings.replace(admin_tokens={"admin-token": "test"}, billing_catalog_refresh_seconds=1.0,
                            billing_customer_lookups_per_minute=600, billing_customer_miss_seconds=1.0)


@pytest.fixture
def guide(sandbox):
    load_seed(sandbox.state, read_seed("guide"))
    return Api(sandbox)


def refresh(url: str) -> dict:
    answer = requests.post(url + "/admin/billing/refresh", headers=ADMIN, timeout=30)
    assert answer.status_code == 200 and answer.json()["refreshed"], answer.text
    return answer.json()


def verdicts(service, *events) -> list:
    answer = service.post(list(events))
    assert answer.status_code == 200, answer.text
    return [event.get("billing", [None])[0] for event in answer.json()["events"]]


def codes(verdict) -> list[str]:
    return [problem["code"] for problem in verdict.get("problems", [])]


def known_customer(service, customer: str, when: str) -> None:
    """Deliver one event for `customer`, then wait until the worker has looked it up."""
    service.post([track(f"warm-{customer}", when, customer=customer, bytes=1, region="us-east-1")])
    wait_until(lambda: "customer_lookup_pending" not in codes(verdicts(
        service, track(f"probe-{customer}", when, customer=customer, bytes=1, region="us-east-1"))[0]),
        message=f"the worker to look up {customer!r}")


def test_transfer_bills_5000_bytes_and_the_typo_transfr_names_transfer(service, guide, clock):
    catalog = refresh(service.url)
    assert TRANSFER in [m["id"] for m in catalog["metrics"]]
    when = clock.iso(-60)
    known_customer(service, "acme", when)
    ok, typo = verdicts(service, track("ok", when, customer="acme", bytes=5000, region="us-east-1"),
                        track("typo", when, customer="acme", event="transfr", bytes=5000, region="us-east-1"))
    assert ok == {"bills": True}  # the accept path's short form; the preview below has the detail
    assert typo["bills"] is False and codes(typo) == ["no_billable_metric"]
    assert "did you mean 'transfer' (metric 'Data transfer (bytes)')" in typo["problems"][0]["message"]

    preview = requests.post(service.url + "/admin/preview", headers=ADMIN, timeout=10, json={
        "event": track("p", when, customer="acme", bytes=5000, region="us-east-1")}).json()
    assert preview["events"][0]["billing"] == [{"bills": True, "metrics": [
        {"id": TRANSFER, "name": "Data transfer (bytes)", "adds": "5000", "key": "bytes", "groups": {"region": "us-east-1"}}]}]


def test_each_problem_from_a_real_event_and_an_alias_that_turns_unknown_into_matched(service, guide, sandbox, clock):
    refresh(service.url)
    when = clock.iso(-60)
    known_customer(service, "acme", when)
    missing, not_numeric = verdicts(
        service, track("l1", when, customer="acme", event="llm_request", model="gpt-5"),
        track("l2", when, customer="acme", event="llm_request", model="gpt-5", input_tokens="12abc"))
    assert codes(missing) == ["missing_aggregation_property"] and "'input_tokens'" in missing["problems"][0]["message"]
    assert codes(not_numeric) == ["aggregation_value_not_numeric"] and "'12abc'" in not_numeric["problems"][0]["message"]
    # A value Metronome would refuse, with the whole batch it came in, is refused at the door and
    # kept as a dead letter, in every BILLING_CHECK mode; the preview's verdict says the same.
    [too_long] = service.post([track("l3", when, customer="acme", bytes=10, region="r" * 300)]).json()["events"]
    assert too_long["status"] == "refused" and too_long["errors"][0]["code"] == "property_value_too_long"
    assert "'region' is 300 bytes" in too_long["errors"][0]["message"]
    letters = requests.get(service.url + "/admin/dead-letters?code=property_value_too_long", headers=ADMIN, timeout=10)
    assert len(letters.json()["dead_letters"]) == 1

    [first] = verdicts(service, track("n1", when, customer="newco", bytes=1, region="eu"))
    assert codes(first) == ["customer_lookup_pending"]
    wait_until(lambda: codes(verdicts(service, track("n2", when, customer="newco", bytes=1, region="eu"))[0])
               == ["unknown_customer"], message="newco looked up and not found")
    guide.post(f"/v1/customers/{GUIDE_CUSTOMER}/setIngestAliases", {"ingest_aliases": ["acme", "newco"]})
    wait_until(lambda: verdicts(service, track("n3", when, customer="newco", bytes=1, region="eu"))[0]["bills"] is True,
               timeout=15, message="newco matched once the alias exists and the catalog looked again")


def test_hold_sets_typos_aside_and_a_replay_after_the_metric_exists_delivers_them_with_their_ids(
        settings, queue, guide, sandbox, clock):
    hold = settings.replace(billing_check="HOLD")
    service = LiveService(create_app(hold, queue=queue, clock=clock), hold, queue, clock).start()
    try:
        refresh(service.url)
        when = clock.iso(-60)
        sent = [track(f"typo-{i}", when, customer="acme", event="transfr", bytes=100 + i, region="eu") for i in range(50)]
        answer = service.post(sent).json()
        assert answer["refused"] == 50 and {e["errors"][0]["code"] for e in answer["events"]} == {"no_billable_metric"}
        held = requests.get(service.url + "/admin/dead-letters?stage=billing&limit=100", headers=ADMIN, timeout=10).json()
        assert len(held["dead_letters"]) == 50
        # each keeps its usage event, so the page can say how long it has before Metronome's 34-day window
        window_end = held["dead_letters"][0]["window_ends_ms"]
        assert window_end == int(datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() * 1000) + 34 * 86_400_000
        assert sandbox.state.events == {}

        metric = guide.create("/v1/billable-metrics/create", {
            "name": "Transfer (as sent)", "event_type_filter": {"in_values": ["transfr"]},
            "property_filters": [{"name": "bytes", "exists": True}], "aggregation_type": "SUM", "aggregation_key": "bytes"})
        assert metric in [m["id"] for m in refresh(service.url)["metrics"]]
        replayed = requests.post(service.url + "/admin/dead-letters/replay", headers=ADMIN, json={"stage": "billing"},
                                 timeout=30).json()
        assert (replayed["resolved"], replayed["still_dead"]) == (50, 0)
        wait_until(lambda: len(sandbox.state.events) == 50 and queue.depth() == 0, message="the 50 held events delivered")
    finally:
        service.close()
    assert set(sandbox.state.events) == {f"typo-{i}" for i in range(50)}
    [row] = guide.post("/v1/usage", {"window_size": "NONE", "starting_on": clock.iso(-3600), "ending_before": clock.iso(60),
                                     "billable_metrics": [{"id": metric}], "customer_ids": [GUIDE_CUSTOMER]})["data"]
    assert row["value"] == sum(100 + i for i in range(50))


def test_after_delivery_a_sample_is_checked_with_events_search_and_metrics_count_it(settings, queue, guide, sandbox, clock):
    sampled = settings.replace(billing_verify_sample=100, billing_verify_interval_seconds=0.2)
    service = LiveService(create_app(sampled, queue=queue, clock=clock), sampled, queue, clock).start()
    try:
        refresh(service.url)
        when = clock.iso(-60)
        known_customer(service, "acme", when)
        good = [track(f"good-{i}", when, customer="acme", bytes=10, region="eu") for i in range(6)]
        typos = [track(f"typo-{i}", when, customer="acme", event="transfr", bytes=10, region="eu") for i in range(4)]
        assert service.post(good + typos).status_code == 200
        wait_until(lambda: queue.depth() == 0, message="delivery")
        clock.advance(6)  # past the few seconds Metronome takes to process an event
        # Every delivery is offered to the sampler: these ten, and the warm-up probes for acme
        # (which repeat one transaction_id, so Metronome keeps one of them).
        delivered = sum(len(r["transaction_ids"]) for r in sandbox.state.requests if r["status"] == 200)

        def checked():
            results = requests.get(service.url + "/admin/billing/verification", headers=ADMIN, timeout=5).json()
            return results if sum(results["counts"].values()) == delivered else None
        results = wait_until(checked, timeout=20, message="the sampler to check every delivered event")
    finally:
        service.close()
    assert results["counts"] == {"matched": delivered - 4, "no_metric": 4}
    assert results["disagreements"] == 0 and all(r["agrees"] for r in results["recent"])
    assert {r["result"] for r in results["recent"] if r["transaction_id"].startswith("typo-")} <= {"no_metric"}
    exposition = create_app(settings, queue=queue, clock=clock).test_client().get("/metrics").get_data(as_text=True)
    assert f'destination_billing_verified_total{{result="matched"}} {float(delivered - 4)}' in exposition
    assert 'destination_billing_verified_total{result="no_metric"} 4.0' in exposition
    assert "destination_billing_verify_disagreements_total 0.0" in exposition


@pytest.mark.parametrize("outage", ["connection_refused", "429"])
def test_with_metronomes_api_unreachable_the_door_answers_as_with_the_check_off(settings, queue, sandbox, clock, outage):
    live = LiveService(create_app(settings, queue=queue, clock=clock), settings, queue, clock)
    if outage == "connection_refused":
        live.worker.billing.refresher.client.base_url = "http://127.0.0.1:9"  # the discard port: nothing listens
    else:
        requests.post(sandbox.url + "/sandbox/faults", json={"api": {"status": 429, "headers": {"Retry-After": "1"}}}, timeout=5)
    live.start()
    off = create_app(settings.replace(billing_check="OFF"), queue=queue, clock=clock).test_client()
    when = clock.iso(-60)
    try:
        batch = [track("u-1", when, bytes=5000, region="eu"), track("u-2", when, event="transfr", bytes=1, region="eu"),
                 {"type": "track", "event": "x", "messageId": "u-3", "timestamp": when}]
        checked = live.post(batch)
        unchecked = off.post("/v1/events", json=batch, headers={"Authorization": live.session.headers.get("Authorization")
                                                                 or _basic(live)})
        assert (checked.status_code, unchecked.status_code) == (200, 200)
        with_check = checked.json()
        assert {k: v for k, v in with_check.items() if k != "events"} == {k: v for k, v in unchecked.json.items() if k != "events"}
        for mine, plain in zip(with_check["events"], unchecked.json["events"]):
            assert {k: v for k, v in mine.items() if k != "billing"} == plain
            assert [codes(v) for v in mine.get("billing", [])] in ([], [["catalog_unavailable"]])
        wait_until(lambda: queue.depth() == 0, message="delivery going on without the catalog")
    finally:
        live.close()


def _basic(live) -> str:
    import base64

    user, password = live.session.auth
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("price, status, expected", [
    ({}, 400, "price needs a customer_id"),
    ({"customer_id": 5}, 400, "price needs a customer_id"),
    ({"customer_id": "00000000-0000-4000-8000-000000000000"}, 200, "customer 00000000-0000-4000-8000-000000000000 not found"),
    ({"customer_id": GUIDE_CUSTOMER}, 200, "Data transfer"),
])
def test_price_it_answers_every_customer_id_clearly(service, guide, clock, price, status, expected):
    answer = requests.post(service.url + "/admin/preview", headers=ADMIN, timeout=10, json={
        "event": track("p", clock.iso(-60), customer="acme", bytes=5000, region="us-east-1"), "price": price})
    assert answer.status_code == status, answer.text
    assert expected in answer.text


@pytest.mark.parametrize("hours", ["0", "169", "abc", "-1", "99999999999999999999"])
def test_the_problems_view_refuses_hours_it_cannot_show_with_a_400(client, hours):
    answer = client.get(f"/admin/billing/problems?hours={hours}", headers=ADMIN)
    assert answer.status_code == 400 and answer.json["code"] in ("invalid_hours", "invalid_number"), answer.json


def test_a_refresh_with_no_worker_running_says_so_with_202_and_stores_nothing(app, client, queue):
    app.config["BILLING_REFRESH_WAIT_S"] = 0.3  # no worker will ever take it here
    answer = client.post("/admin/billing/refresh", headers=ADMIN)
    assert (answer.status_code, answer.json["refreshed"]) == (202, False)
    assert "is a worker running?" in answer.json["message"] and answer.json["refreshed_ms"] is None
