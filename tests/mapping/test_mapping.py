"""The default mapping, path semantics, and mapping files refused with the exact location."""
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonpath_ng.ext import parse as jsonpath

from conftest import ROOT
from destination.errors import ConfigError, EventRefused
from destination.mapping.mapping_set import compile_mapping_set, compile_path, load_mapping_set, map_event

DEFAULT = load_mapping_set(ROOT / "destination" / "mappings" / "default.json")


def test_default_mapping_reads_the_segment_fields():
    event = {"type": "track", "event": "llm_request", "messageId": "m1", "userId": "u1", "anonymousId": "a1",
             "timestamp": "2026-11-20T12:30:00Z", "properties": {"model": "gpt-5"}}
    [(mapping, values)] = map_event(DEFAULT, event)
    assert values == {"transaction_id": "m1", "customer_id": "u1", "event_type": "llm_request",
                      "timestamp": "2026-11-20T12:30:00Z", "properties": {"model": "gpt-5"}}


@pytest.mark.parametrize("user_id", [None, "", "missing"])
def test_customer_id_falls_back_to_anonymous_id(user_id):
    event = {"type": "track", "anonymousId": "anon_7"}
    if user_id != "missing":
        event["userId"] = user_id
    [(_, values)] = map_event(DEFAULT, event)
    assert values["customer_id"] == "anon_7"


@pytest.mark.parametrize("kind", ["identify", "page", "screen", "group", "alias", "delete", "unknown", None])
def test_default_mapping_subscribes_only_to_track(kind):
    assert map_event(DEFAULT, {"type": kind, "event": "x"}) == []


def test_a_scalar_path_matching_several_values_refuses_the_event():
    mapping_set = compile_mapping_set({"mappings": [{
        "name": "m", "trigger": {"path": "$.type", "exists": True},
        "fields": {"transaction_id": {"path": "$.ids[*]"}, "customer_id": {"literal": "c"},
                   "event_type": {"literal": "e"}, "timestamp": {"path": "$.timestamp"}}}]}, "v1")
    [(_, refusal)] = map_event(mapping_set, {"type": "track", "ids": ["a", "b"]})
    assert isinstance(refusal, EventRefused) and refusal.code == "ambiguous_field"


@pytest.mark.parametrize("operator, operand, value, expected", [
    ("equals", "track", "track", True), ("equals", "track", "page", False),
    ("in", ["a", "b"], "b", True), ("in", ["a", "b"], "c", False),
    ("exists", True, "x", True), ("exists", True, None, False),
    ("not_exists", True, None, True), ("not_exists", True, "x", False),
    ("starts_with", "llm_", "llm_request", True), ("starts_with", "llm_", "api", False),
    ("contains", "token", "input_tokens", True), ("contains", "token", 5, False),
])
def test_trigger_operators(operator, operand, value, expected):
    mapping_set = compile_mapping_set({"mappings": [{
        "name": "m", "trigger": {"all": [{"path": "$.v", operator: operand}]},
        "fields": {f: {"literal": "x"} for f in ("transaction_id", "customer_id", "event_type", "timestamp")}}]}, "v1")
    assert bool(map_event(mapping_set, {"v": value})) is expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c_1"]), children, max_size=3),
    max_leaves=12,
)


@given(json_values, st.lists(st.sampled_from(["a", "b", "c_1"]), min_size=1, max_size=3))
def test_fast_dotted_getter_agrees_with_jsonpath_ng(document, keys):
    path = "$." + ".".join(keys)
    assert compile_path(path)(document) == [m.value for m in jsonpath(path).find(document)]


@given(json_values, st.lists(st.sampled_from(["a", "b", "c_1"]), min_size=1, max_size=3))
def test_a_dotted_single_value_lookup_agrees_with_jsonpath_ng(document, keys):
    """compile_single answers dotted paths without lists; it must give jsonpath-ng's one match, or None."""
    from destination.mapping.sources import compile_single

    path = "$." + ".".join(keys)
    matches = [m.value for m in jsonpath(path).find(document)]
    assert len(matches) <= 1
    assert compile_single(path)(document, "f") == (matches[0] if matches else None)


def test_shipped_mapping_files_are_valid():
    for path in (ROOT / "destination" / "mappings").glob("*.json"):
        assert load_mapping_set(path).mappings


INVALID = json.loads((ROOT / "tests" / "data" / "invalid_mappings.json").read_text())


@pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
def test_invalid_mapping_is_refused_at_the_exact_location(case):
    with pytest.raises(ConfigError) as refused:
        compile_mapping_set(case["document"], "v")
    assert case["error"] in str(refused.value).splitlines()


def test_invalid_mapping_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"mappings": [}')
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        load_mapping_set(bad)


def test_every_problem_comes_back_at_once_schema_and_paths_alike_as_the_readme_shows():
    """The three-error example in docs/mappings.md: a bad JSONPath is reported beside two shape errors, not
    only once they are fixed."""
    base = json.loads((ROOT / "destination" / "mappings" / "default.json").read_text())["mappings"][0]
    first = json.loads(json.dumps(base))
    first["fields"]["customer_id"] = {"path": "$.user["}
    first["fields"]["timestamp"] = {"path": "$.timestamp", "transforms": ["rfc3339", "iso8601"]}
    second = {**json.loads(json.dumps(base)), "name": "second",
              "properties": {"from": "$.properties", "include": ["a"], "exclude": ["b"]}}
    with pytest.raises(ConfigError) as refused:
        compile_mapping_set({"mappings": [first, second]}, "v")
    readme = (ROOT / "docs" / "mappings.md").read_text()
    block = readme[readme.index("/mappings/0/fields/customer_id/path"):]
    expected = block[:block.index("```")].strip().splitlines()
    assert str(refused.value).splitlines() == expected and len(expected) == 3


def test_paths_in_a_document_with_shape_errors_are_still_compiled_and_located():
    broken = {"mappings": [{"name": "m", "trigger": {"all": [{"path": "$.[", "equals": 1}, "junk"]},
                            "fields": {"transaction_id": {"path": "$..["}, "customer_id": 5,
                                       "event_type": {"template": "{{$.event"}, "timestamp": {"hash": ["$.a", 7]}},
                            "properties": {"add": {"x": {"path": "$.]"}}, "include": "notalist"}}, "not a mapping"]}
    with pytest.raises(ConfigError) as refused:
        compile_mapping_set(broken, "v")
    lines = str(refused.value).splitlines()
    located = [line.split(": ")[0] for line in lines]
    for where in ("/mappings/0/trigger/all/0/path", "/mappings/0/fields/transaction_id/path",
                  "/mappings/0/fields/event_type/template", "/mappings/0/properties/add/x/path",
                  "/mappings/0/fields/customer_id", "/mappings/1"):
        assert where in located, (where, lines)
