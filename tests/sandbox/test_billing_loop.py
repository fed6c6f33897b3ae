"""Metronome's integration-testing guide, offline: customers, metrics, usage, pricing and drafts,
all over HTTP, and the silent non-billing cases reproduced."""
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
import requests

from conftest import TOKEN, track, wait_until
from metronome_api import Api
from metronome_spec import DOC


def ingest(sandbox, events):
    response = requests.post(sandbox.url + "/v1/ingest", data=orjson.dumps(events), timeout=10,
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text


def usage_event(tid, when, customer="acme", event_type="transfer", **properties):
    return {"transaction_id": tid, "customer_id": customer, "event_type": event_type, "timestamp": when,
            "properties": {k: str(v) for k, v in properties.items()}}


def guide_account(api):
    """The guide's pricing: 6000 bytes cost $0.60, so a byte costs 0.01 cents."""
    metric = api.transfer_metric()
    product = api.usage_product(metric)
    return metric, api.rate_card({"product_id": product, "rate_type": "FLAT", "price": 0.01})


def test_the_guides_test_through_the_destination_bills_6000_bytes_for_60_cents(service, sandbox, clock):
    api = Api(sandbox)
    metric, card = guide_account(api)
    customer = api.customer("Test customer", "test-customer", rate_card=card)
    when = clock.iso(-60)
    sent = [track("t-1", when, customer="test-customer", bytes=5000, region="us-east"),
            track("t-1", when, customer="test-customer", bytes=5000, region="us-east"),
            track("t-2", when, customer="test-customer", bytes=1000, region="us-east")]
    assert service.post(sent).json()["accepted"] == 3
    wait_until(lambda: service.queue.depth() == 0 and sandbox.state.duplicates == 1, message="all three delivered")

    invoice = api.draft(customer)
    [line] = invoice["line_items"]
    assert (line["name"], line["quantity"], line["total"], invoice["total"]) == ("Data transfer", 6000, 60, 60)
    assert invoice["status"] == "DRAFT" and invoice["credit_type"]["name"] == "USD (cents)"

    found = api.search("t-1", "t-2")
    assert [(e["transaction_id"], e["is_duplicate"]) for e in found] == [("t-1", False), ("t-1", True), ("t-2", False)]
    for event in (found[0], found[2]):
        assert event["matched_customer"] == {"id": customer, "name": "Test customer"}
        assert [m["id"] for m in event["matched_billable_metrics"]] == [metric]
    assert found[1]["matched_billable_metrics"] == []  # a repeat counts for nothing


def test_tiered_pricing_reaches_every_tier_with_exact_totals(sandbox, clock):
    """$0.10/GB for the first 100 GB, $0.09 for the next 900, $0.08 beyond; 1,250 GB in all."""
    api = Api(sandbox)
    metric = api.transfer_metric()
    product = api.usage_product(metric, quantity_conversion={"conversion_factor": 10**9, "operation": "DIVIDE"})
    tiers = [{"size": 100, "price": 10}, {"size": 900, "price": 9}, {"price": 8}]
    customer = api.customer("Tiered", "tiered", rate_card=api.rate_card(
        {"product_id": product, "rate_type": "TIERED", "tiers": tiers}))
    gigabytes = [300, 450, 125, 375]  # 1,250 GB in events that straddle the tier edges
    ingest(sandbox, [usage_event(f"gb-{i}", clock.iso(-600), "tiered", bytes=gb * 10**9, region="eu")
                     for i, gb in enumerate(gigabytes)])

    lines = api.draft(customer)["line_items"]
    expected, left, start = [], Decimal(sum(gigabytes)), 0
    for level, tier in enumerate(tiers, start=1):  # computed here, independently of the sandbox
        size = Decimal(tier["size"]) if "size" in tier else left
        quantity = min(left, size)
        expected.append((level, str(start), quantity, tier["price"], quantity * tier["price"]))
        left -= quantity
        start += size
        if not left:
            break
    assert [(ln["tier"]["level"], ln["tier"]["starting_at"], ln["quantity"], ln["unit_price"], ln["total"])
            for ln in lines] == expected
    assert [line["total"] for line in lines] == [1000, 8100, 2000]
    assert api.draft(customer)["total"] == 11100


def test_usage_grouped_by_region_equals_sums_computed_here_in_day_and_hour_windows(sandbox, clock):
    api = Api(sandbox)
    metric = api.transfer_metric()
    customer = api.customer("Grouped", "grouped")
    day0 = datetime.fromtimestamp(clock(), timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=4)
    rng = random.Random(7)
    expected = {"DAY": defaultdict(int), "HOUR": defaultdict(int)}
    events = []
    for i in range(400):
        moment = day0 + timedelta(seconds=rng.randrange(5 * 86400))
        region, size = rng.choice(["us-east", "eu", "ap"]), rng.randrange(1, 10_000)
        events.append(usage_event(f"g-{i}", moment.isoformat().replace("+00:00", "Z"), "grouped", bytes=size, region=region))
        expected["DAY"][(moment.strftime("%Y-%m-%dT00"), region)] += size
        expected["HOUR"][(moment.strftime("%Y-%m-%dT%H"), region)] += size
    for start in range(0, len(events), 100):
        ingest(sandbox, events[start:start + 100])

    span = {"starting_on": day0.isoformat().replace("+00:00", "Z"),
            "ending_before": (day0 + timedelta(days=5)).isoformat().replace("+00:00", "Z")}
    for window in ("DAY", "HOUR"):
        rows = api.pages("/v1/usage", {**span, "window_size": window, "customer_ids": [customer],
                                       "billable_metrics": [{"id": metric, "group_by": {"key": "region"}}]})
        assert len(rows) == (5 if window == "DAY" else 120)  # HOUR takes two pages of 100
        got = {(row["start_timestamp"][:13], region): value for row in rows
               for region, value in row["groups"].items() if value}
        assert got == dict(expected[window])
        assert all(row["value"] == sum(row["groups"].values()) for row in rows)

    only_eu = api.pages("/v1/usage", {**span, "window_size": "DAY", "customer_ids": [customer],
                                      "billable_metrics": [{"id": metric, "group_by": {"key": "region", "values": ["eu"]}}]})
    assert {(row["start_timestamp"][:13], "eu"): row["groups"]["eu"] for row in only_eu} == {
        key: value for key, value in expected["DAY"].items() if key[1] == "eu"}
    assert all(set(row["groups"]) == {"eu"} for row in only_eu)

    groups = api.pages("/v1/usage/groups", {**span, "window_size": "DAY", "customer_id": customer,
                                            "billable_metric_id": metric, "group_key": ["region"]})
    assert {(row["starting_on"][:13], row["group_value"]): row["value"] for row in groups if row["value"]} == dict(expected["DAY"])


def test_events_sent_for_an_alias_before_it_exists_bill_once_it_is_added(sandbox, clock):
    api = Api(sandbox)
    metric, card = guide_account(api)
    customer = api.customer("Acme", "acme", rate_card=card)
    ingest(sandbox, [usage_event("early-1", clock.iso(-300), "acme-internal", bytes=4000, region="eu"),
                     usage_event("early-2", clock.iso(-200), "acme-internal", bytes=2000, region="eu")])
    assert api.draft(customer)["total"] == 0
    assert "matched_customer" not in api.search("early-1")[0]

    api.post(f"/v1/customers/{customer}/setIngestAliases", {"ingest_aliases": ["acme", "acme-internal"]})
    [line] = api.draft(customer)["line_items"]
    assert (line["quantity"], line["total"]) == (6000, 60)
    assert api.search("early-1")[0]["matched_customer"]["id"] == customer
    assert api.get("/v1/customers?ingest_alias=acme-internal")["data"][0]["id"] == customer


def test_an_event_type_no_metric_matches_is_accepted_and_bills_nothing(sandbox, clock):
    api = Api(sandbox)
    metric, card = guide_account(api)
    customer = api.customer("Acme", "acme", rate_card=card)
    ingest(sandbox, [usage_event("typo", clock.iso(-60), event_type="transfr", bytes=5000, region="eu"),
                     usage_event("good", clock.iso(-60), bytes=1000, region="eu")])
    [typo] = api.search("typo")
    assert typo["matched_billable_metrics"] == [] and typo["matched_customer"]["id"] == customer
    [row] = api.post("/v1/usage", {"window_size": "NONE", "starting_on": clock.iso(-3600), "ending_before": clock.iso(3600),
                                   "billable_metrics": [{"id": metric}]})["data"]
    assert row["value"] == 1000  # the typo's 5000 bytes are nowhere
    assert api.draft(customer)["total"] == 10


def test_a_pricing_group_value_without_a_rate_shows_its_quantity_and_charges_nothing(sandbox, clock):
    api = Api(sandbox)
    metric = api.create("/v1/billable-metrics/create", {
        "name": "LLM input tokens", "event_type_filter": {"in_values": ["llm_request"]},
        "property_filters": [{"name": "input_tokens", "exists": True}, {"name": "model", "exists": True}],
        "aggregation_type": "SUM", "aggregation_key": "input_tokens", "group_keys": [["model"]]})
    product = api.usage_product(metric, "LLM input tokens", pricing_group_key=["model"])
    card = api.rate_card({"product_id": product, "rate_type": "FLAT", "price": 0.000125, "pricing_group_values": {"model": "gpt-5"}})
    customer = api.customer("Tokens", "tokens", rate_card=card)
    ingest(sandbox, [usage_event("a", clock.iso(-60), "tokens", "llm_request", input_tokens=800_000, model="gpt-5"),
                     usage_event("b", clock.iso(-60), "tokens", "llm_request", input_tokens=400_000, model="gpt5")])
    lines = {line["pricing_group_values"]["model"]: line for line in api.draft(customer)["line_items"]}
    assert (lines["gpt-5"]["quantity"], lines["gpt-5"]["unit_price"], lines["gpt-5"]["total"]) == (800_000, 0.000125, 100)
    assert (lines["gpt5"]["quantity"], lines["gpt5"]["total"]) == (400_000, 0)
    assert "unit_price" not in lines["gpt5"]


def test_preview_events_prices_what_events_would_add_without_storing_them(sandbox, clock):
    api = Api(sandbox)
    _, card = guide_account(api)
    customer = api.customer("Acme", "acme", rate_card=card)
    ingest(sandbox, [usage_event("real", clock.iso(-60), bytes=6000, region="eu")])
    preview = [{"event_type": "transfer", "timestamp": clock.iso(-30), "properties": {"bytes": "1000", "region": "eu"}}]
    merged = api.post(f"/v1/customers/{customer}/previewEvents", {"events": preview, "mode": "merge"})["data"]
    replaced = api.post(f"/v1/customers/{customer}/previewEvents", {"events": preview, "mode": "replace"})["data"]
    assert (merged[0]["total"], replaced[0]["total"]) == (70, 10)
    assert api.draft(customer)["total"] == 60 and len(sandbox.state.events) == 1


def test_an_archived_metric_counts_no_new_event(sandbox, clock):
    api = Api(sandbox)
    metric = api.transfer_metric()
    ingest(sandbox, [usage_event("before", clock.iso(-60), bytes=1, region="eu")])
    api.post("/v1/billable-metrics/archive", {"id": metric})
    ingest(sandbox, [usage_event("after", clock.iso(-60), bytes=1, region="eu")])
    before, after = api.search("before", "after")
    assert ([m["id"] for m in before["matched_billable_metrics"]], after["matched_billable_metrics"]) == ([metric], [])
    assert api.get("/v1/billable-metrics")["data"] == []
    [archived] = api.get("/v1/billable-metrics?include_archived=true")["data"]
    assert archived["id"] == metric and archived["archived_at"]


def test_every_route_the_sandbox_serves_answers_in_the_shape_of_metronomes_spec(sandbox, clock):
    """One call to each operation; the fixture's oracle checks every answer and fails on any mismatch."""
    api = Api(sandbox)
    metric, card = guide_account(api)
    customer = api.customer("Acme", "acme", rate_card=card)
    ingest(sandbox, [usage_event("one", clock.iso(-60), bytes=10, region="eu")])
    api.get("/v1/customers?limit=1")
    api.get(f"/v1/customers/{customer}")
    api.post(f"/v1/customers/{customer}/setIngestAliases", {"ingest_aliases": ["acme", "acme-2"]})
    api.get("/v1/billable-metrics")
    api.get(f"/v1/billable-metrics/{metric}")
    api.get(f"/v1/customers/{customer}/billable-metrics")
    api.search("one")
    api.post("/v1/usage", {"window_size": "NONE", "starting_on": clock.iso(-3600), "ending_before": clock.iso(60)})
    api.post("/v1/usage/groups", {"window_size": "NONE", "customer_id": customer, "billable_metric_id": metric,
                                  "group_key": ["region"]})
    api.draft(customer)
    api.post(f"/v1/customers/{customer}/previewEvents", {"events": [{"event_type": "transfer"}]})
    api.post("/v1/billable-metrics/archive", {"id": metric})
    assert api.call("GET", "/v1/plans").status_code == 404
    served = {op for op in DOC["operations"]}
    assert served <= set(sandbox.conformance.checked), served - set(sandbox.conformance.checked)
    assert sandbox.conformance.problems == []
