"""The admin page's Delivery view in a real headless Chromium, over a live service delivering to the
sandbox: its chart totals are the counters /metrics shows for the same run, and a search for one
messageId shows every delivery attempt, the failed ones too, with Metronome's answers.

/metrics counts since this test process started, so each figure is the change over the run.
"""
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from browser import Page, screenshot
from conftest import live_service, track, wait_until

ADMIN = "delivery-admin-token"
# chart kind -> (metric, label filter): what /metrics calls each series the Delivery view draws
METRIC_OF = {
    "received": ("destination_events_received", {}),
    "accepted": ("destination_events_accepted", {}),
    "filtered": ("destination_events_filtered", {}),
    "refused": ("destination_events_refused", {}),
    "delivered": ("destination_events_delivered", {}),
    "retried": ("destination_events_retried", {}),
    "dead_lettered": ("destination_events_dead_lettered", {"stage": "delivery"}),
}


@pytest.fixture
def live(settings, queue, clock, sandbox):
    with live_service(settings, queue, clock, admin_tokens={ADMIN: "ops"}) as service:
        yield service


def counters(url: str) -> dict:
    """Each chart kind's total in /metrics, and the reasons of refusals, retries and dead letters."""
    text = requests.get(url + "/metrics", timeout=5).text
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples if s.name.endswith("_total")]
    totals, reasons = {}, {}
    for kind, (name, labels) in METRIC_OF.items():
        found = [s for s in samples if s.name == name + "_total" and labels.items() <= s.labels.items()]
        totals[kind] = int(sum(s.value for s in found))
        for s in found:
            reason = s.labels.get("reason") or s.labels.get("status")
            if reason:
                reasons[(kind, reason)] = int(s.value)
    return {"totals": totals, "reasons": reasons}


def change(before: dict, after: dict) -> dict:
    return {"totals": {k: after["totals"][k] - before["totals"][k] for k in after["totals"]},
            "reasons": {k: v - before["reasons"].get(k, 0) for k, v in after["reasons"].items()
                        if v - before["reasons"].get(k, 0)}}


def test_the_chart_totals_are_the_metrics_and_a_search_shows_every_attempt(browser, live, sandbox, clock, queue, tmp_path):
    before = counters(live.url)
    # A 5xx burst: the first three batches are answered 500 and retried.
    requests.post(sandbox.url + "/sandbox/faults", json={"script": [{"status": 500}] * 3}, timeout=5).raise_for_status()
    # One event Metronome refuses on its own: its batch is split until it is dead-lettered alone.
    requests.post(sandbox.url + "/sandbox/faults", json={"reject_transaction_ids": ["refused-by-metronome"]},
                  timeout=5).raise_for_status()
    good = [track(f"dv-{i:03d}", clock.iso(), customer=f"cust_{i % 3}") for i in range(40)]
    no_customer = [{**track(f"nc-{i}", clock.iso()), "userId": None} for i in range(4)]
    not_track = [{"type": "identify", "userId": "cust_0", "messageId": f"id-{i}", "timestamp": clock.iso()} for i in range(3)]
    answer = live.post(good[:20] + no_customer + not_track + [track("refused-by-metronome", clock.iso())])
    assert answer.json()["accepted"] == 21 and answer.json()["refused"] == 4 and answer.json()["filtered"] == 3
    assert live.post(good[20:]).json()["accepted"] == 20
    wait_until(lambda: queue.depth() == 0, timeout=30, message="every event delivered or dead-lettered")
    statuses = [r["status"] for r in sandbox.state.requests]
    assert statuses.count(500) == 3 and 400 in statuses
    metrics = change(before, counters(live.url))
    assert metrics["totals"] == {"received": 48, "accepted": 41, "filtered": 3, "refused": 4, "delivered": 40,
                                 "retried": metrics["totals"]["retried"], "dead_lettered": 1}
    assert metrics["totals"]["retried"] >= 3  # at least one event per failed batch

    page = Page(browser, live.url)
    page.sign_in(ADMIN)
    page.wait.until(lambda _: page.css("#tabs [data-tab=delivery]"), "the tabs")
    page.css('#tabs [data-tab="delivery"]')[0].click()
    page.wait.until(lambda _: len(page.css("#delivery-legend li")) == 7, "the legend")
    page.until_text("delivery-queue", "0 queued", "5 dead letters", "not halted")  # 4 refused at receive, 1 at delivery
    chart = {line.get_attribute("data-kind"): int(line.get_attribute("data-total"))
             for line in page.css("#delivery-chart polyline")}
    legend = {item.get_attribute("data-kind"): int(item.get_attribute("data-total")) for item in page.css("#delivery-legend li")}
    assert chart == legend == metrics["totals"]
    shown_reasons = {}
    for tr in page.css("#delivery-reasons tr"):
        what, reason, count = (td.text for td in tr.find_elements(page.By.TAG_NAME, "td")[:3])
        shown_reasons[(what.replace("dead-lettered", "dead_lettered"), reason)] = int(count)
    assert shown_reasons == {key: value for key, value in metrics["reasons"].items() if key[0] != "received"}
    assert shown_reasons[("refused", "missing_customer_id")] == 4
    assert shown_reasons[("retried", "500")] == metrics["totals"]["retried"]
    assert shown_reasons[("dead_lettered", "metronome_400")] == 1
    screenshot(browser, tmp_path, "delivery-view.png")

    # The event sent in a batch that was answered 500 first: its journey shows the failure, then the 200.
    target = _first_retried(queue)
    page.type_into("journey-value", target)
    page.el("journey-search").click()
    page.until_text("journey-status", "1 usage event(s) found")
    box = page.css(f'.journey[data-transaction-id="{target}"]')[0]
    assert box.get_attribute("data-fate") == "delivered"
    steps = [(tr.get_attribute("data-step"), tr.get_attribute("data-status")) for tr in box.find_elements(page.By.CSS_SELECTOR, "tbody tr")]
    assert steps[0] == ("received", None)
    assert ("attempt", "500") in steps and steps[-1] == ("attempt", "200")
    assert "HTTP 500 scripted failure" in box.text and "received, mapped by v1" in box.text

    # The event Metronome refused: its 400 answer, word for word, and its dead letter.
    page.type_into("journey-value", "refused-by-metronome")
    page.el("journey-search").click()
    page.wait.until(lambda _: page.css('.journey[data-transaction-id="refused-by-metronome"]'), "the refused event")
    box = page.css('.journey[data-transaction-id="refused-by-metronome"]')[0]
    assert box.get_attribute("data-fate") == "dead_lettered"
    assert "HTTP 400 event 0: customer_id 'cust_1' is not allowed" in box.text and "metronome_400" in box.text
    screenshot(browser, tmp_path, "delivery-journey.png")


def _first_retried(queue) -> str:
    """A messageId whose first attempt was answered 500 (the delivery log says which)."""
    rows = [r for c in ("cust_0", "cust_1", "cust_2") for r in queue.search_deliveries(customer_id=c, limit=1000)]
    return next(r["message_id"] for r in rows if r["outcome"] == "retry" and r["status"] == 500)
