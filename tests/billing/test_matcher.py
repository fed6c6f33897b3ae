"""The matcher as a table: each usage event against a catalog, and the verdict it gets."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from destination.billing.matcher import Catalog, Metric, verdict

TRANSFER = {"id": "m-transfer", "name": "Data transfer", "event_type_filter": {"in_values": ["transfer"]},
            "property_filters": [{"name": "bytes", "exists": True}, {"name": "region", "exists": True}],
            "aggregation_type": "SUM", "aggregation_key": "bytes", "group_keys": [["region"]]}
TOKENS = {"id": "m-tokens", "name": "LLM input tokens", "event_type_filter": {"in_values": ["llm_request"]},
          "property_filters": [{"name": "input_tokens", "exists": True}, {"name": "model", "exists": True}],
          "aggregation_type": "SUM", "aggregation_key": "input_tokens", "group_keys": [["model"]]}
CALLS = {"id": "m-calls", "name": "API calls", "event_type_filter": {"in_values": ["api_call"]},
         "property_filters": [{"name": "env", "in_values": ["prod"]}], "aggregation_type": "COUNT"}
USERS = {"id": "m-users", "name": "Active users", "property_filters": [{"name": "user", "exists": True}],
         "aggregation_type": "UNIQUE", "aggregation_key": "user"}
CATALOG = Catalog([Metric.from_api(m) for m in (TRANSFER, TOKENS, CALLS)], {"acme": True, "ghost": False}, 1)


def event(event_type="transfer", customer="acme", **properties):
    return {"transaction_id": "t", "customer_id": customer, "event_type": event_type, "timestamp": "2026-11-22T00:00:00Z",
            "properties": properties}


@pytest.mark.parametrize("usage, bills, codes, hint", [
    (event(bytes="5000", region="eu"), [("Data transfer", "5000", {"region": "eu"})], [], None),
    (event("transfr", bytes="5000", region="eu"), [], ["no_billable_metric"], "did you mean 'transfer' (metric 'Data transfer')"),
    (event(bytes="5000"), [], ["no_billable_metric"], "its filter 'region' exists does not pass"),
    (event("llm_request", model="gpt-5"), [], ["missing_aggregation_property"], "sums property 'input_tokens'"),
    (event("llm_request", model="gpt-5", input_tokens="12abc"), [], ["aggregation_value_not_numeric"], "it is '12abc'"),
    (event("llm_request", model="gpt-5", input_tokens="1e3"), [("LLM input tokens", "1e3", {"model": "gpt-5"})], [], None),
    (event("api_call", env="prod"), [("API calls", "1", {})], [], None),
    (event("api_call", env="dev"), [], ["no_billable_metric"], "its filter 'env' in ['prod'] does not pass"),
    (event("page_view"), [], ["no_billable_metric"], "no billable metric takes event_type 'page_view'"),
    (event(customer="ghost", bytes="1", region="eu"), [("Data transfer", "1", {"region": "eu"})], ["unknown_customer"], "ingest alias 'ghost'"),
    (event(customer="new", bytes="1", region="eu"), [("Data transfer", "1", {"region": "eu"})], ["customer_lookup_pending"], "'new' is being looked up"),
])
def test_a_verdict_names_what_bills_and_what_to_fix(usage, bills, codes, hint):
    judged = verdict(usage, CATALOG)
    assert [(m.name, adds, {k: usage["properties"][k] for k in m.group_keys if k in usage["properties"]})
            for m, adds in judged.bills] == bills
    assert [p.code for p in judged.problems] == codes
    if hint:
        assert hint in judged.problems[0].message


def test_without_a_catalog_every_event_is_catalog_unavailable_and_the_rest_still_checked():
    judged = verdict(event(bytes="1", region="x"), None)
    assert [p.code for p in judged.problems] == ["catalog_unavailable"]
    assert judged.as_json()["bills"] is None


def test_a_metric_without_an_event_type_filter_takes_every_type():
    catalog = Catalog([Metric.from_api(m) for m in (TRANSFER, USERS)], {"acme": True}, 1)
    judged = verdict(event("transfer", bytes="5", region="eu", user="u1"), catalog)
    assert sorted(m.name for m, _ in judged.bills) == ["Active users", "Data transfer"]
    assert [m.name for m, _ in verdict(event("login", user="u1"), catalog).bills] == ["Active users"]


def test_a_sql_metric_may_match_anything_so_no_event_is_called_unbillable():
    catalog = Catalog([Metric.from_api({"id": "s", "name": "SQL", "sql": "select 1"})], {"acme": True}, 1)
    assert verdict(event("anything"), catalog).problems == []


def test_the_answer_form_of_a_verdict():
    judged = verdict(event(bytes="5000", region="eu"), CATALOG)
    assert judged.as_json() == {"bills": True, "metrics": [
        {"id": "m-transfer", "name": "Data transfer", "adds": "5000", "key": "bytes", "groups": {"region": "eu"}}]}
    assert verdict(event("transfr"), CATALOG).as_json()["bills"] is False


@pytest.mark.parametrize("usage, clean", [
    (event(bytes="5000", region="eu"), True),
    (event(bytes="12.5", region="eu"), True),
    (event("api_call", env="prod"), False),  # a filter with in_values: the full verdict decides
    (event("transfr", bytes="1", region="eu"), False),
    (event(customer="new", bytes="1", region="eu"), False),
    (event(customer="ghost", bytes="1", region="eu"), False),
    (event(bytes="1"), False),  # a required property missing
    (event(bytes="", region="eu"), False),
    (event(bytes="²", region="eu"), False),  # str.isdigit says yes; Metronome reads no number
    (event(bytes="٣", region="eu"), False),
    (event("llm_request", model="gpt-5", input_tokens="12abc"), False),
    (event("llm_request", model="gpt-5", input_tokens="7"), True),
])
def test_the_fast_path_only_says_clean_when_the_full_verdict_has_nothing_to_say(usage, clean):
    assert CATALOG.clean_test(usage) is clean
    if clean:
        full = verdict(usage, CATALOG)
        assert full.bills and not full.problems


@given(st.sampled_from(["transfer", "llm_request", "api_call", "transfr"]), st.sampled_from(["acme", "ghost", "new"]),
       st.dictionaries(st.sampled_from(["bytes", "region", "model", "input_tokens", "env", "user"]),
                       st.one_of(st.sampled_from(["1", "0.5", "-3", "1e3", "", "x", "²", "٣", "prod", "12abc", " 7"]),
                                 st.text(max_size=4))))
def test_whatever_the_fast_path_calls_clean_the_full_verdict_bills_with_nothing_to_say(event_type, customer, properties):
    usage = event(event_type, customer, **properties)
    if CATALOG.clean_test(usage):
        full = verdict(usage, CATALOG)
        assert full.bills and not full.problems, (usage, full.as_json())


def test_the_fast_path_has_a_plan_only_for_types_whose_metrics_filter_plainly():
    assert set(CATALOG.plans) == {"transfer", "llm_request"}  # api_call's metric filters on in_values
    assert CATALOG.plans["transfer"] == (frozenset({"bytes", "region"}), ("bytes",))
    untyped = Catalog([Metric.from_api(m) for m in (TRANSFER, USERS)], {"acme": True}, 1)
    assert untyped.plans == {}  # a metric that takes any event type: every event gets the full verdict
