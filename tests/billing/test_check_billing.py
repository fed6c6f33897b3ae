"""`metronome-destination check`'s billing section: which metrics each mapping can feed."""
import json

import pytest

from conftest import ROOT
from destination.check import output_event_types, run_checks
from destination.sandbox.seed import load_seed, read_seed


@pytest.mark.parametrize("mapping, types", [
    ({"fields": {"event_type": {"literal": "input_tokens"}}}, {"input_tokens"}),
    ({"fields": {"event_type": {"path": "$.event"}}, "trigger": {"path": "$.type", "equals": "track"}}, None),
    ({"fields": {"event_type": {"path": "$.event"}},
      "trigger": {"all": [{"path": "$.type", "equals": "track"}, {"path": "$.event", "equals": "transfer"}]}}, {"transfer"}),
    ({"fields": {"event_type": {"path": "$.event"}}, "trigger": {"path": "$.event", "in": ["a", "b"]}}, {"a", "b"}),
    ({"fields": {"event_type": {"path": "$.event"}},
      "trigger": {"any": [{"path": "$.event", "equals": "a"}, {"path": "$.type", "equals": "track"}]}}, None),
    ({"fields": {"event_type": {"path": "$.event", "transforms": ["lower"]}},
      "trigger": {"path": "$.event", "equals": "A"}}, None),  # a transform changes the value: not pinned
    ({"fields": {"event_type": {"template": "{{$.event}}_v2"}}, "trigger": {"path": "$.event", "equals": "a"}}, None),
])
def test_the_event_types_a_mapping_can_produce(mapping, types):
    assert output_event_types(mapping) == types


def test_check_names_the_mappings_that_feed_no_metric_and_the_metrics_fed_by_none(settings, sandbox, tmp_path):
    load_seed(sandbox.state, read_seed("guide"))
    document = json.loads((ROOT / "destination" / "mappings" / "llm_tokens.json").read_text())
    document["mappings"].append({"name": "transfers", "trigger": {"path": "$.event", "equals": "transfer"},
                                 "fields": {"transaction_id": {"path": "$.messageId"}, "customer_id": {"path": "$.userId"},
                                            "event_type": {"path": "$.event"}, "timestamp": {"path": "$.timestamp"}}})
    (tmp_path / "m.json").write_text(json.dumps(document))
    results = {r.name: r for r in run_checks(settings.replace(mappings_path=str(tmp_path / "m.json")))}
    assert results["billing: transfers"].ok
    assert results["billing: transfers"].detail == "event_type ['transfer'] feeds 'Data transfer (bytes)'"
    assert not results["billing: llm input tokens"].ok
    assert results["billing: llm input tokens"].detail == "event_type ['input_tokens'] feeds no billable metric: its usage would bill nothing"
    assert results["billing: metrics"].detail == "fed by no mapping here: ['LLM input tokens']"


def test_check_with_the_default_mapping_says_each_event_decides(settings, sandbox):
    load_seed(sandbox.state, read_seed("guide"))
    results = {r.name: r for r in run_checks(settings)}
    assert results["billing: track events as usage"].ok
    assert "judged per event" in results["billing: track events as usage"].detail
