"""Every bad request to the emulated API: its status and message, never a 5xx, and nothing changed."""
import uuid

import orjson
import pytest
import requests

from conftest import TOKEN
from metronome_api import Api

UNKNOWN = str(uuid.UUID(int=12345))
DAY = {"starting_on": "2026-11-20T00:00:00Z", "ending_before": "2026-11-21T00:00:00Z"}


@pytest.fixture
def account(sandbox):
    """A customer (alias `acme`), another (alias `taken`), the guide's metric, product and rate card."""
    api = Api(sandbox)
    metric = api.transfer_metric()
    product = api.usage_product(metric)
    card = api.rate_card({"product_id": product, "rate_type": "FLAT", "price": 0.01})
    ids = {"metric": metric, "product": product, "card": card, "unknown": UNKNOWN,
           "customer": api.customer("Acme", "acme", rate_card=card), "other": api.customer("Other", "taken")}
    return api, ids


def snapshot(sandbox) -> tuple:
    book = sandbox.state
    return (len(book.customers), dict(book.by_alias), len(book.metrics), len(book.products), len(book.contracts),
            sum(len(c.rates) for c in book.rate_cards.values()), len(book.events),
            tuple(m.archived_at for m in book.metrics.values()))


CASES = [
    # (method, path, body, status, a part of the message)
    ("POST", "/v1/customers", {}, 400, "'name' is a required property"),
    ("POST", "/v1/customers", {"name": 5}, 400, "name: 5 is not of type 'string'"),
    ("POST", "/v1/customers", {"name": "x", "ingest_aliases": [""]}, 400, "ingest_aliases/0: '' should be non-empty"),
    ("POST", "/v1/customers", {"name": "x", "ingest_aliases": ["taken"]}, 409, "ingest alias 'taken' already belongs"),
    ("POST", "/v1/customers", "not json", 400, "request body is not valid JSON"),
    ("POST", "/v1/customers", ["a list"], 400, "['a list'] is not of type 'object'"),
    ("POST", "/v1/customers/{customer}/setIngestAliases", {"ingest_aliases": ["taken"]}, 409, "already belongs to customer"),
    ("POST", "/v1/customers/{unknown}/setIngestAliases", {"ingest_aliases": ["x"]}, 404, f"customer {UNKNOWN} not found"),
    ("POST", "/v1/customers/{customer}/setIngestAliases", {}, 400, "'ingest_aliases' is a required property"),
    ("GET", "/v1/customers/{unknown}", None, 404, f"customer {UNKNOWN} not found"),
    ("GET", "/v1/customers?limit=0", None, 400, "limit must be a whole number from 1 to 100"),
    ("GET", "/v1/customers?limit=abc", None, 400, "limit must be a whole number from 1 to 100"),
    ("GET", "/v1/customers?next_page=garbage", None, 400, "next_page is not a cursor this API gave"),
    ("POST", "/v1/billable-metrics/create", {"name": "m", "sql": "select 1"}, 400, "SQL billable metrics are not implemented by the sandbox"),
    ("POST", "/v1/billable-metrics/create", {"name": "m"}, 400, "aggregation_type is required"),
    ("POST", "/v1/billable-metrics/create", {"name": "m", "aggregation_type": "AVG"}, 400, "'AVG' is not one of"),
    ("POST", "/v1/billable-metrics/create", {"name": "m", "aggregation_type": "SUM"}, 400, "aggregation_key is required for a SUM metric"),
    ("POST", "/v1/billable-metrics/create", {"name": "m", "aggregation_type": "SUM", "aggregation_key": "bytes"}, 400,
     "aggregation_key 'bytes' must be one of the property_filters with exists: true"),
    ("POST", "/v1/billable-metrics/create", {"name": "m", "aggregation_type": "SUM", "aggregation_key": "bytes",
                                             "property_filters": [{"name": "bytes"}]}, 400, "must be one of the property_filters"),
    ("POST", "/v1/billable-metrics/create", {"name": "m", "aggregation_type": "COUNT", "group_keys": [["region"]]}, 400,
     "group key 'region' must be one of the property_filters with exists: true"),
    ("POST", "/v1/billable-metrics/create", {"name": "m", "aggregation_type": "COUNT", "property_filters": [{"exists": True}]},
     400, "property_filters/0: 'name' is a required property"),
    ("GET", "/v1/billable-metrics/{unknown}", None, 404, f"billable metric {UNKNOWN} not found"),
    ("GET", "/v1/billable-metrics?include_archived=maybe", None, 400, "include_archived must be true or false"),
    ("POST", "/v1/billable-metrics/archive", {"id": UNKNOWN}, 404, f"billable metric {UNKNOWN} not found"),
    ("POST", "/v1/billable-metrics/archive", {"id": "not-a-uuid"}, 400, "id: 'not-a-uuid' is not a 'uuid'"),
    ("GET", "/v1/customers/{unknown}/billable-metrics", None, 404, f"customer {UNKNOWN} not found"),
    ("POST", "/v1/usage", {**DAY, "window_size": "WEEK"}, 400, "window_size: 'WEEK' is not one of ['HOUR', 'DAY', 'NONE']"),
    ("POST", "/v1/usage", {**DAY, "window_size": "day"}, 400, "window_size: 'day' is not one of"),
    ("POST", "/v1/usage", {"window_size": "DAY"}, 400, "'starting_on' is a required property"),
    ("POST", "/v1/usage", {"window_size": "DAY", "starting_on": "yesterday", "ending_before": DAY["ending_before"]}, 400,
     "starting_on: 'yesterday' is not a 'date-time'"),
    ("POST", "/v1/usage", {"window_size": "DAY", "starting_on": "2026-11-20T06:00:00Z", "ending_before": DAY["ending_before"]},
     400, "must fall on a UTC day boundary"),
    ("POST", "/v1/usage", {"window_size": "NONE", "starting_on": DAY["ending_before"], "ending_before": DAY["starting_on"]},
     400, "ending_before must be after starting_on"),
    ("POST", "/v1/usage", {**DAY, "window_size": "DAY", "billable_metrics": [{"id": UNKNOWN}]}, 404, f"billable metric {UNKNOWN} not found"),
    ("POST", "/v1/usage", {**DAY, "window_size": "DAY", "customer_ids": [UNKNOWN]}, 404, f"customer {UNKNOWN} not found"),
    ("POST", "/v1/usage", {**DAY, "window_size": "DAY", "billable_metrics": [{"id": "{metric}", "group_by": {"key": "bytes"}}]},
     400, "'bytes' is not a group key of billable metric"),
    ("POST", "/v1/usage?next_page=eyJ4IjoxfQ==", {**DAY, "window_size": "DAY"}, 400, "next_page is not a cursor this API gave"),
    ("POST", "/v1/usage/groups", {"window_size": "DAY", "customer_id": "{customer}"}, 400, "'billable_metric_id' is a required property"),
    ("POST", "/v1/usage/groups", {**DAY, "window_size": "DAY", "customer_id": "{unknown}", "billable_metric_id": "{metric}"},
     404, f"customer {UNKNOWN} not found"),
    ("POST", "/v1/events/search", {}, 400, "'transactionIds' is a required property"),
    ("POST", "/v1/contract-pricing/products/create", {"name": "p", "type": "USAGE"}, 400, "a USAGE product needs billable_metric_id"),
    ("POST", "/v1/contract-pricing/products/create", {"name": "p", "type": "USAGE", "billable_metric_id": UNKNOWN}, 404,
     f"billable metric {UNKNOWN} not found"),
    ("POST", "/v1/contract-pricing/products/create", {"name": "p", "type": "USAGE", "billable_metric_id": "{metric}",
                                                      "pricing_group_key": ["model"]}, 400, "group key 'model' is not a group key"),
    ("POST", "/v1/contract-pricing/rate-cards/create", {}, 400, "'name' is a required property"),
    ("POST", "/v1/contract-pricing/rate-cards/addRates", {"rate_card_id": UNKNOWN, "rates": []}, 404, f"rate card {UNKNOWN} not found"),
    ("POST", "/v1/contract-pricing/rate-cards/addRates", {"rate_card_id": "{card}", "rates": [
        {"product_id": UNKNOWN, "starting_at": "2026-01-01T00:00:00Z", "entitled": True, "rate_type": "FLAT", "price": 1}]},
     400, f"rates/0: product {UNKNOWN} not found"),
    ("POST", "/v1/contract-pricing/rate-cards/addRates", {"rate_card_id": "{card}", "rates": [
        {"product_id": "{product}", "starting_at": "2026-01-01T00:00:00Z", "entitled": True, "rate_type": "PERCENTAGE"}]},
     400, "rate_type PERCENTAGE is not implemented by the sandbox"),
    ("POST", "/v1/contract-pricing/rate-cards/addRates", {"rate_card_id": "{card}", "rates": [
        {"product_id": "{product}", "starting_at": "2026-01-01T00:00:00Z", "entitled": True, "rate_type": "FLAT"}]},
     400, "rates/0: a FLAT rate needs price"),
    ("POST", "/v1/contract-pricing/rate-cards/addRates", {"rate_card_id": "{card}", "rates": [
        {"product_id": "{product}", "starting_at": "2026-01-01T00:00:00Z", "entitled": True, "rate_type": "TIERED",
         "tiers": [{"price": 2}, {"price": 1}]}]}, 400, "every tier but the last needs a positive size"),
    ("POST", "/v1/contract-pricing/rate-cards/addRates", {"rate_card_id": "{card}", "rates": [
        {"product_id": "{product}", "starting_at": "2026-01-01T00:00:00Z", "entitled": True, "rate_type": "FLAT", "price": 1,
         "pricing_group_values": {"region": "eu"}}]}, 400, "pricing_group_values must name exactly"),
    ("POST", "/v1/contracts/create", {"customer_id": UNKNOWN, "rate_card_id": "{card}", "starting_at": "2026-01-01T00:00:00Z"},
     404, f"customer {UNKNOWN} not found"),
    ("POST", "/v1/contracts/create", {"customer_id": "{customer}", "rate_card_id": UNKNOWN, "starting_at": "2026-01-01T00:00:00Z"},
     404, f"rate card {UNKNOWN} not found"),
    ("POST", "/v1/contracts/create", {"customer_id": "{customer}", "starting_at": "2026-01-01T00:00:00Z"}, 400,
     "rate_card_id is required by the sandbox"),
    ("GET", "/v1/customers/{unknown}/invoices", None, 404, f"customer {UNKNOWN} not found"),
    ("GET", "/v1/customers/{customer}/invoices?skip_zero_qty_line_items=1", None, 400, "skip_zero_qty_line_items must be true or false"),
    ("POST", "/v1/customers/{customer}/previewEvents", {"events": []}, 400, "events: [] should be non-empty"),
    ("POST", "/v1/customers/{customer}/previewEvents", {"events": [{"event_type": "transfer"}], "mode": "sum"}, 400,
     "mode: 'sum' is not one of ['replace', 'merge']"),
    ("POST", "/v1/customers/{customer}/previewEvents", {"events": [{"event_type": "transfer", "timestamp": "soon"}]}, 400,
     "events/0/timestamp: 'soon' is not RFC 3339"),
    ("POST", "/v1/customers/{unknown}/previewEvents", {"events": [{"event_type": "transfer"}]}, 404, f"customer {UNKNOWN} not found"),
    ("GET", "/v1/plans", None, 404, "GET /v1/plans is not implemented by the sandbox"),
    ("DELETE", "/v1/customers", None, 405, "DELETE /v1/customers is not implemented by the sandbox"),
]


def fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize("method, path, body, status, message", CASES, ids=[f"{c[0]} {c[1]} {c[3]}" for c in CASES])
def test_a_bad_request_gets_its_status_and_a_message_and_changes_nothing(account, sandbox, method, path, body, status, message):
    api, ids = account
    before = snapshot(sandbox)
    data = body.encode() if isinstance(body, str) else orjson.dumps(fill(body, ids)) if body is not None else None
    response = api.session.request(method, api.url + fill(path, ids), data=data, timeout=10)
    assert (response.status_code, message in response.json()["message"]) == (status, True), response.text
    assert snapshot(sandbox) == before


@pytest.mark.parametrize("header, status", [(None, 401), ("Bearer wrong", 403), ("Basic c2FuZGJveA==", 401)])
def test_every_route_refuses_a_missing_or_wrong_token(sandbox, header, status):
    headers = {"Authorization": header} if header else {}
    for method, path in [("GET", "/v1/customers"), ("POST", "/v1/usage"), ("GET", "/v1/billable-metrics")]:
        response = requests.request(method, sandbox.url + path, headers=headers, json={}, timeout=5)
        assert (response.status_code, response.json()) == (status, {"message": "Unauthorized"})


def test_a_property_value_over_256_bytes_refuses_the_whole_batch(sandbox, clock):
    good = {"transaction_id": "ok", "customer_id": "c", "event_type": "transfer", "timestamp": clock.iso(-60),
            "properties": {"bytes": "1"}}
    long_one = {**good, "transaction_id": "long", "properties": {"products": "x" * 257}}
    response = requests.post(sandbox.url + "/v1/ingest", data=orjson.dumps([good, long_one]), timeout=5,
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert (response.status_code, response.json()["message"]) == (
        400, "event 1: property 'products' is 257 bytes; values may be at most 256 bytes")
    assert sandbox.state.events == {}
    at_limit = {**good, "properties": {"products": "é" * 128}}  # 256 bytes of UTF-8
    response = requests.post(sandbox.url + "/v1/ingest", data=orjson.dumps([at_limit]), timeout=5,
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and list(sandbox.state.events) == ["ok"]


def test_a_next_page_cursor_walks_a_list_and_is_refused_for_another_query(account, sandbox):
    api, ids = account
    first = api.get("/v1/customers?limit=1")
    second = api.get(f"/v1/customers?limit=1&next_page={first['next_page']}")
    assert [c["id"] for c in first["data"] + second["data"]] == [ids["customer"], ids["other"]]
    assert second["next_page"] is None
    response = api.call("GET", f"/v1/customers?limit=1&ingest_alias=acme&next_page={first['next_page']}")
    assert response.status_code == 400 and "belongs to another query" in response.json()["message"]


def test_an_impossible_calendar_date_refuses_the_batch_and_is_no_5xx(sandbox):
    event = {"transaction_id": "feb30", "customer_id": "c", "event_type": "transfer", "timestamp": "2026-02-30T00:00:00Z"}
    response = requests.post(sandbox.url + "/v1/ingest", data=orjson.dumps([event]), timeout=5,
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert (response.status_code, response.json()["message"]) == (400, "event 0: timestamp '2026-02-30T00:00:00Z' is not RFC 3339")
    assert sandbox.state.events == {}
