"""Random bodies and parameters on every emulated route: a 4xx with a message, never a 5xx."""
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TOKEN
from destination.payload import exact
from destination.sandbox.seed import load_seed, read_seed
from metronome_spec import DOC

IDS = st.sampled_from(["5e2d1c0b-0000-4000-8000-000000000031", "5e2d1c0b-0000-4000-8000-000000000001", "00000000-0000-0000-0000-000000000000", "x", ""])
LEAVES = (st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
          | st.decimals(allow_nan=False, allow_infinity=False)
          | st.text(max_size=12) | st.sampled_from(["DAY", "HOUR", "NONE", "2026-02-30T00:00:00Z",
                                                   "2026-11-22T00:00:00Z", "SUM", "TIERED", "transfer"]))
KEYS = st.sampled_from(["name", "ingest_aliases", "id", "aggregation_type", "aggregation_key", "property_filters",
                        "event_type_filter", "group_keys", "window_size", "starting_on", "ending_before", "customer_ids",
                        "billable_metrics", "group_by", "key", "values", "transactionIds", "rates", "tiers", "size",
                        "price", "rate_type", "product_id", "rate_card_id", "customer_id", "billable_metric_id",
                        "events", "mode", "timestamp", "properties", "event_type", "transaction_id", "exists",
                        "in_values", "starting_at", "group_key", "quantity_conversion"]) | st.text(max_size=6)
JSON = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=6),
                    max_leaves=20)
ROUTES = sorted(DOC["operations"])


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=JSON, path_id=IDS,
       query=st.dictionaries(st.sampled_from(["limit", "next_page", "include_archived", "status", "ingest_alias",
                                              "skip_zero_qty_line_items"]), st.text(max_size=8), max_size=3))
def test_no_request_makes_the_sandbox_answer_5xx(sandbox, route, body, path_id, query):
    if not sandbox.state.customers:  # the guide's objects, so the ids above reach past "not found"
        load_seed(sandbox.state, read_seed("guide"))
    method, path = route.split(" ", 1)
    url = sandbox.url + path.replace("{customer_id}", path_id or "none").replace("{billable_metric_id}", path_id or "none")
    response = requests.request(method, url, params=query, data=exact.dumps(body), timeout=10,
                                headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, (route, body, response.text)
    if response.status_code >= 400:
        assert response.json()["message"]
