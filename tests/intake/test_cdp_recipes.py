"""The README's "Connect your CDP" recipes for webhook senders, each sent as that sender sends it
(Segment's and Customer.io's signatures made with Node's crypto, RudderStack's and Jitsu's static
header), to a running service: the usage events reach the sandbox. The SDK recipes are in
test_sdks.py, with the real client libraries."""
import json

import pytest
import requests

from conftest import DATA, live_service, wait_until

VECTORS = json.loads((DATA / "signatures.json").read_text())
SECRET = VECTORS["secret"]
CASES = {case["name"]: case for case in VECTORS["cases"]}


@pytest.fixture
def hooks(settings, queue, clock, sandbox):
    with live_service(settings, queue, clock, webhook_secrets={SECRET: "cdp"}) as service:
        yield service


def _delivered(sandbox, ids: list[str]) -> dict:
    return wait_until(lambda: all(i in sandbox.state.events for i in ids) and {i: sandbox.state.events[i] for i in ids},
                      message=f"{ids} at the sandbox")


@pytest.mark.parametrize("sender, case", [
    ("Segment Webhooks (Actions), batching on", "batch: only the first element is signed"),
    ("Customer.io Data Pipelines Webhook", "single event"),
])
def test_signed_webhook_recipes_reach_the_sandbox(hooks, sandbox, sender, case):
    vector = CASES[case]
    answer = requests.post(hooks.url + "/v1/webhook", data=vector["body"].encode(), timeout=10,
                           headers={"Content-Type": "application/json", "X-Signature": vector["signature"]})
    assert answer.status_code == 200, answer.text
    sent = json.loads(vector["body"])
    events = sent if isinstance(sent, list) else [sent]
    delivered = _delivered(sandbox, [e["messageId"] for e in events])
    for event in events:
        usage = delivered[event["messageId"]]
        assert (usage["customer_id"], usage["event_type"], usage["timestamp"]) == (
            event["userId"], event["event"], event["timestamp"])  # a webhook sender's time is trusted as sent


@pytest.mark.parametrize("sender", ["RudderStack Webhook", "Jitsu Webhook"])
def test_static_header_webhook_recipes_reach_the_sandbox(hooks, sandbox, clock, sender):
    message_id = f"{sender.split()[0].lower()}-1"
    event = {"type": "track", "event": "transfer", "messageId": message_id, "userId": "acct_7",
             "timestamp": clock.iso(-5), "receivedAt": clock.iso(), "properties": {"bytes": 2048, "region": "eu"}}
    answer = requests.post(hooks.url + "/v1/webhook", json=event, headers={"X-Webhook-Secret": SECRET}, timeout=10)
    assert answer.status_code == 200, answer.text
    usage = _delivered(sandbox, [message_id])[message_id]
    assert (usage["customer_id"], usage["properties"]) == ("acct_7", {"bytes": "2048", "region": "eu"})
    assert ":" not in SECRET  # Jitsu splits a header line at ':': the README says to pick a secret without one
