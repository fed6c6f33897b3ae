"""The mapping language's edge cases, exactly as the README states them: paths, templates, hashes,
defaults, transforms, properties, enabled, and several mappings on one event."""
import copy
import hashlib

import orjson
import pytest
import requests

from conftest import ROOT, wait_until
from destination.errors import EventRefused
from destination.intake.pipeline import process_events
from destination.mapping.mapping_set import compile_mapping_set, load_mapping_set, map_event
from destination.payload.validate import Limits

BASE = {"name": "m", "trigger": {"path": "$.type", "equals": "track"},
        "fields": {"transaction_id": {"path": "$.messageId"}, "customer_id": {"path": ["$.userId", "$.anonymousId"]},
                   "event_type": {"path": "$.event"}, "timestamp": {"path": "$.timestamp"}}}
EVENT = {"type": "track", "event": "llm_request", "messageId": "m-1", "userId": "u-1", "timestamp": "2026-11-20T12:00:00Z",
         "properties": {"model": " GPT-5 ", "input_tokens": 1200, "output_tokens": 310, "cost": 0.0042,
                        "request": {"region": "eu", "retry": {"count": 2}}, "tags": ["a", "b"], "debug": True},
         "context": {"groupId": "org_9"}}
NOW_MS = 1_795_219_200_000  # 2026-11-21T00:00Z, a day after EVENT


def mapped(event=EVENT, properties=None, **fields):
    """Map `event` with one mapping whose fields are BASE's with `fields` replacing some."""
    spec = copy.deepcopy(BASE)
    spec["fields"].update(fields)
    if properties is not None:
        spec["properties"] = properties
    [(_, values)] = map_event(compile_mapping_set({"mappings": [spec]}, "v"), event)
    return values


def refusal(event=EVENT, properties=None, **fields) -> tuple[str, str]:
    values = mapped(event, properties, **fields)
    assert isinstance(values, EventRefused), values
    return values.code, values.message


# -- paths, defaults, required fields -----------------------------------------------------------------

def test_a_path_list_takes_the_first_non_empty_value():
    event = {**EVENT, "userId": "", "anonymousId": None}
    assert mapped(event, customer_id={"path": ["$.userId", "$.anonymousId", "$.context.groupId"]})["customer_id"] == "org_9"


@pytest.mark.parametrize("user_id", ["", "   ", "\t\n", None])
def test_a_user_id_that_is_empty_or_only_spaces_falls_through_to_the_next_path(user_id):
    event = {**EVENT, "userId": user_id, "anonymousId": "anon-7"}
    assert mapped(event, customer_id={"path": ["$.userId", "$.anonymousId"]})["customer_id"] == "anon-7"
    alone = {**EVENT, "userId": user_id}
    [result] = process_events([alone], compile_mapping_set({"mappings": [BASE]}, "v"), NOW_MS, Limits()).results
    assert result["status"] == "refused" and result["errors"][0]["code"] == "missing_customer_id"


def test_zero_matches_use_the_default_and_a_required_field_without_one_is_refused():
    assert mapped(customer_id={"path": "$.context.accountId", "default": "house"})["customer_id"] == "house"
    values = mapped(customer_id={"path": "$.context.accountId"})
    assert values["customer_id"] is None
    [result] = process_events([EVENT], compile_mapping_set({"mappings": [{**BASE, "fields": {
        **BASE["fields"], "customer_id": {"path": "$.context.accountId"}}}]}, "v"), NOW_MS, Limits()).results
    assert result["errors"][0]["code"] == "missing_customer_id"


def test_a_scalar_path_that_matches_several_values_refuses_the_event():
    code, message = refusal(event_type={"path": "$.properties.tags[*]"})
    assert code == "ambiguous_field" and message == "event_type: the path matched 2 values; it must match one"


def test_the_default_is_used_as_written_not_transformed():
    assert mapped(event_type={"path": "$.nothing", "default": "Mixed Case", "transforms": ["lower"]})["event_type"] == "Mixed Case"


# -- templates ------------------------------------------------------------------------------------------

def test_a_template_joins_text_and_values():
    assert mapped(transaction_id={"template": "{{$.messageId}}:{{$.properties.input_tokens}}:in"})["transaction_id"] == "m-1:1200:in"
    assert mapped(event_type={"template": "{{ $.properties.cost }}/{{$.properties.debug}}"})["event_type"] == "0.0042/true"


def test_a_template_with_a_missing_placeholder_gives_nothing_so_the_default_or_refusal_applies():
    assert mapped(event_type={"template": "{{$.event}}:{{$.properties.absent}}", "default": "fallback"})["event_type"] == "fallback"
    assert mapped(transaction_id={"template": "{{$.messageId}}:{{$.properties.absent}}"})["transaction_id"] is None


def test_a_template_placeholder_that_finds_an_object_refuses_the_event():
    code, message = refusal(event_type={"template": "x{{$.properties.request}}"})
    assert (code, message) == ("template_value_not_scalar", "event_type: a template placeholder found an object or array")


# -- hash ------------------------------------------------------------------------------------------------

def test_a_hash_is_deterministic_and_ignores_key_order_and_number_spelling():
    spec = {"hash": ["$.userId", "$.event", "$.timestamp", "$.properties"]}
    first = mapped(transaction_id=spec)["transaction_id"]
    reordered = {**EVENT, "properties": dict(reversed(list({**EVENT["properties"], "input_tokens": 1200.0}.items())))}
    assert mapped(reordered, transaction_id=spec)["transaction_id"] == first
    assert len(first) == 64 and int(first, 16) >= 0
    changed = {**EVENT, "properties": {**EVENT["properties"], "input_tokens": 1201}}
    assert mapped(changed, transaction_id=spec)["transaction_id"] != first


def test_a_hash_tells_a_number_from_the_same_digits_as_text():
    spec = {"hash": ["$.properties.input_tokens"]}
    as_text = {**EVENT, "properties": {"input_tokens": "1200"}}
    assert mapped(transaction_id=spec)["transaction_id"] != mapped(as_text, transaction_id=spec)["transaction_id"]


def test_a_hash_of_paths_that_are_all_missing_gives_nothing():
    assert mapped(transaction_id={"hash": ["$.nope", "$.neither"]})["transaction_id"] is None
    some = mapped(transaction_id={"hash": ["$.nope", "$.userId"]})["transaction_id"]
    assert some is not None and some == mapped(transaction_id={"hash": ["$.nope", "$.userId"]})["transaction_id"]


# -- transforms ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("transforms, value, expected", [
    (["string"], 12.50, "12.5"), (["string"], True, "true"),
    (["lower"], "GPT-5", "gpt-5"), (["upper"], "post", "POST"), (["trim"], "  x \n", "x"),
    (["trim", "lower"], " GPT-5 ", "gpt-5"),
    (["rfc3339"], "2026-11-20 12:00:00.123456+01:00", "2026-11-20T11:00:00.123Z"),
    (["rfc3339"], 1795000000, "2026-11-18T11:06:40.000Z"),
    (["epoch_s"], 1795000000.5, "2026-11-18T11:06:40.500Z"), (["epoch_s"], "1795000000", "2026-11-18T11:06:40.000Z"),
    (["epoch_ms"], 1795000000123, "2026-11-18T11:06:40.123Z"), (["epoch_ms"], 5, "1970-01-01T00:00:00.005Z"),
    (["decimal"], "1e3", "1000"), (["decimal"], " 0.10 ", "0.1"), (["decimal"], 7, "7"),
    (["hash"], "abc", hashlib.sha256(b"abc").hexdigest()),
    (["decimal", "hash"], 1.0, hashlib.sha256(b"1").hexdigest()),  # 1.0 and 1 hash alike
])
def test_each_transform(transforms, value, expected):
    event = {**EVENT, "properties": {"v": value}}
    assert mapped(event, event_type={"path": "$.properties.v", "transforms": transforms})["event_type"] == expected


@pytest.mark.parametrize("transforms, value, message", [
    (["decimal"], "12 tokens", "event_type: transform 'decimal': '12 tokens' is not a number"),
    (["decimal"], True, "event_type: transform 'decimal': needs a number, not a boolean"),
    (["decimal"], "NaN", "event_type: transform 'decimal': 'NaN' is not a finite number"),
    (["rfc3339"], "yesterday", "event_type: transform 'rfc3339': timestamp 'yesterday' is not ISO 8601 / RFC 3339 or epoch"),
    (["epoch_s"], "soon", "event_type: transform 'epoch_s': 'soon' is not a number"),
    (["epoch_ms"], 10**30, "event_type: transform 'epoch_ms': 1000000000000000000000000000000 is not a time in range"),
    (["lower"], {"a": 1}, "event_type: transform 'lower': needs a string, number or boolean, not an object"),
    (["hash"], [1], "event_type: transform 'hash': needs a string, number or boolean, not an array"),
])
def test_a_value_a_transform_cannot_read_refuses_the_event_naming_both(transforms, value, message):
    event = {**EVENT, "properties": {"v": value}}
    assert refusal(event, event_type={"path": "$.properties.v", "transforms": transforms}) == ("transform_failed", message)


def test_a_transform_that_empties_a_value_falls_back_to_the_default():
    event = {**EVENT, "properties": {"v": "   "}}
    assert mapped(event, event_type={"path": "$.properties.v", "transforms": ["trim"], "default": "none"})["event_type"] == "none"


# -- properties -----------------------------------------------------------------------------------------

def test_properties_flatten_then_include_then_rename_then_add():
    values = mapped(properties={"from": "$.properties", "flatten": ".",
                                "include": ["model", "request.region", "request.retry.count", "tags"],
                                "rename": {"request.region": "region"},
                                "add": {"plan": {"literal": "pro"}, "model": {"path": "$.properties.model", "transforms": ["trim"]},
                                        "group": {"path": "$.context.groupId"}, "absent": {"path": "$.context.nothing"}}})
    assert values["properties"] == {"model": "GPT-5", "region": "eu", "request.retry.count": 2, "tags": ["a", "b"],
                                    "plan": "pro", "group": "org_9"}


def test_properties_exclude_and_a_custom_separator():
    values = mapped(properties={"from": "$.properties", "flatten": "__", "exclude": ["debug", "tags", "request__retry__count"]})
    assert values["properties"] == {"model": " GPT-5 ", "input_tokens": 1200, "output_tokens": 310, "cost": 0.0042,
                                    "request__region": "eu"}


@pytest.mark.parametrize("rule, expected", [
    ({"exclude": ["request"]}, {"model", "input_tokens", "output_tokens", "cost", "tags", "debug"}),
    ({"exclude": ["request.retry"]}, {"model", "input_tokens", "output_tokens", "cost", "request.region", "tags", "debug"}),
    ({"exclude": ["req"]}, {"model", "input_tokens", "output_tokens", "cost", "request.region", "request.retry.count", "tags", "debug"}),
    ({"include": ["request"]}, {"request.region", "request.retry.count"}),
    ({"include": ["request.retry", "model"]}, {"request.retry.count", "model"}),
])
def test_include_and_exclude_name_a_flattened_object_whole(rule, expected):
    """Naming an object keeps or drops everything flattening made of it, and only that: `req` is
    not a prefix of `request.region` at a separator."""
    assert set(mapped(properties={"from": "$.properties", "flatten": ".", **rule})["properties"]) == expected


def test_the_shipped_api_calls_mapping_sends_nothing_of_a_nested_debug_object():
    event = {**EVENT, "event": "api_search", "properties": {"path": "/v1/search", "debug": {"trace": "x" * 300, "on": True}}}
    [(_, values)] = map_event(LLM, event)
    assert values["properties"] == {"endpoint": "/v1/search", "method": "GET"}


@pytest.mark.parametrize("value, limit, expected", [
    ("abcdef", 3, "abc"),
    ("abc", 10, "abc"),
    ("ééé", 3, "é"),  # 2 bytes each: the second would be cut in half, so it goes whole
    ("a🙂b", 4, "a"),
    (12345, 2, "12"),
    (["p1", "p2"], 6, '["p1",'),  # an array is cut as the JSON text Metronome would get
])
def test_truncate_cuts_utf8_bytes_and_never_half_a_character(value, limit, expected):
    event = {**EVENT, "properties": {"products": value}}
    got = mapped(event, properties={"add": {"products": {"path": "$.properties.products", "transforms": [{"truncate": limit}]}}})
    assert got["properties"]["products"] == expected and len(expected.encode()) <= limit


def test_a_long_value_is_refused_at_accept_unless_the_mapping_truncates_it():
    products = [{"sku": f"sku-{i}", "name": "Widget " * 3} for i in range(8)]
    event = {**EVENT, "properties": {"products": products}}
    refuse = {"mappings": [{**BASE, "properties": {"add": {"products": {"path": "$.properties.products"}}}}]}
    [result] = process_events([event], compile_mapping_set(refuse, "v"), NOW_MS, Limits()).results
    assert result["status"] == "refused" and result["errors"][0]["code"] == "property_value_too_long"
    assert "property 'products' is" in result["errors"][0]["message"]
    cut = {"mappings": [{**BASE, "properties": {"add": {"products": {"path": "$.properties.products",
                                                                     "transforms": [{"truncate": 200}]}}}}]}
    processed = process_events([event], compile_mapping_set(cut, "v"), NOW_MS, Limits())
    assert processed.results[0]["status"] == "accepted"
    assert len(orjson.loads(processed.rows[0].payload)["properties"]["products"].encode()) == 200


def test_properties_without_from_are_only_what_is_added():
    assert mapped(properties={"add": {"tokens": {"path": "$.properties.input_tokens"}}})["properties"] == {"tokens": 1200}
    assert mapped(properties={})["properties"] == {}


def test_flattening_into_a_key_that_already_exists_refuses_the_event():
    event = {**EVENT, "properties": {"a.b": 1, "a": {"b": 2}}}
    assert refusal(event, properties={"from": "$.properties", "flatten": "."}) == (
        "property_key_collision", "properties: flattening gives the key 'a.b' twice")


def test_properties_from_a_non_object_refuses_the_event():
    assert refusal(properties={"from": "$.properties.tags"})[0] == "invalid_properties"


def test_a_disabled_mapping_does_nothing():
    spec = {**copy.deepcopy(BASE), "enabled": False}
    assert map_event(compile_mapping_set({"mappings": [spec]}, "v"), EVENT) == []


# -- one event, several mappings -----------------------------------------------------------------------

LLM = load_mapping_set(ROOT / "destination" / "mappings" / "llm_tokens.json")


def test_one_llm_call_gives_two_usage_events_with_distinct_stable_transaction_ids():
    first = process_events([EVENT], LLM, NOW_MS, Limits())
    again = process_events([copy.deepcopy(EVENT)], LLM, NOW_MS + 60_000, Limits())
    assert first.results[0]["transaction_ids"] == ["m-1:input_tokens", "m-1:output_tokens"]
    assert [row.payload for row in again.rows] == [row.payload for row in first.rows]
    sent = [orjson.loads(row.payload) for row in first.rows]
    assert [(e["event_type"], e["properties"]) for e in sent] == [
        ("input_tokens", {"tokens": "1200", "model": "gpt-5"}), ("output_tokens", {"tokens": "310", "model": "gpt-5"})]


def test_two_mappings_that_give_one_transaction_id_refuse_the_second_loudly():
    twice = {"mappings": [BASE, {**copy.deepcopy(BASE), "name": "m2"}]}
    [result] = process_events([EVENT], compile_mapping_set(twice, "v"), NOW_MS, Limits()).results
    assert result["status"] == "partial" and result["transaction_ids"] == ["m-1"]
    assert result["errors"] == [{"mapping": "m2", "code": "duplicate_transaction_id",
                                 "message": "another mapping already produced transaction_id 'm-1'"}]


def test_the_api_calls_example_flattens_renames_and_adds_a_default():
    event = {**EVENT, "event": "api_search", "properties": {"path": "/v1/search", "debug": True, "took": {"ms": 12}}}
    [(mapping, values)] = map_event(LLM, event)
    assert mapping.name == "api calls"
    assert values["properties"] == {"endpoint": "/v1/search", "took.ms": 12, "method": "GET"}


@pytest.fixture
def llm_service(settings, queue, clock, sandbox):
    from conftest import LiveService
    from destination.app import create_app

    settings = settings.replace(mappings_path=str(ROOT / "destination" / "mappings" / "llm_tokens.json"))
    live = LiveService(create_app(settings, queue=queue, clock=clock), settings, queue, clock).start()
    yield live
    live.close()


def test_sending_the_same_llm_call_again_gives_no_new_usage_at_the_sandbox(llm_service, sandbox, clock):
    calls = [{**EVENT, "messageId": f"call-{i}", "timestamp": clock.iso()} for i in range(20)]
    assert llm_service.post(calls).json()["accepted"] == 20
    delivered = wait_until(lambda: len(sandbox.state.events) == 40 and dict(sandbox.state.events), message="40 usage events")
    assert sorted(delivered) == sorted(f"call-{i}:{kind}" for i in range(20) for kind in ("input_tokens", "output_tokens"))
    totals = wait_until(lambda: requests.get(sandbox.url + "/sandbox/totals", timeout=5).json())
    assert totals["u-1"]["input_tokens"] == {"count": 20, "sums": {"tokens": "24000"}}
    assert totals["u-1"]["output_tokens"] == {"count": 20, "sums": {"tokens": "6200"}}
    wait_until(lambda: llm_service.queue.depth() == 0, message="the first delivery to be acked")
    assert llm_service.post(calls).json()["accepted"] == 20  # the CDP retries the whole batch
    wait_until(lambda: sandbox.state.duplicates == 40, message="the retry to be deduplicated")
    assert requests.get(sandbox.url + "/sandbox/totals", timeout=5).json() == totals


def test_the_segment_metronome_actions_mapping_reproduces_its_defaults():
    """Segment's Metronome (Actions) destination: messageId, context.groupId, event, timestamp and
    the properties; here the values become Metronome's exact strings."""
    segment = load_mapping_set(ROOT / "destination" / "mappings" / "segment_metronome_actions.json")
    [result] = process_events([EVENT], segment, NOW_MS, Limits()).results
    assert result["status"] == "accepted"
    [(_, values)] = map_event(segment, EVENT)
    assert (values["transaction_id"], values["customer_id"], values["event_type"]) == ("m-1", "org_9", "llm_request")
    assert values["properties"] == EVENT["properties"]
    assert map_event(segment, {**EVENT, "type": "identify"}) == []

