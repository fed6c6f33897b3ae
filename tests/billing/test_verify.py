"""Post-delivery verification's pure parts: what a search answer means, and a bounded sample."""
import random
from types import SimpleNamespace

import pytest

from destination.billing.matcher import Catalog, Metric
from destination.billing.verify import RESERVOIR, Verifier, compare

METRIC = {"id": "m1", "name": "Transfer", "event_type_filter": {"in_values": ["transfer"]},
          "property_filters": [{"name": "bytes", "exists": True}], "aggregation_type": "SUM", "aggregation_key": "bytes"}
CATALOG = Catalog([Metric.from_api(METRIC)], {"acme": True, "ghost": False}, 1)
GOOD = {"transaction_id": "t", "customer_id": "acme", "event_type": "transfer", "properties": {"bytes": "5"}}
TYPO = {**GOOD, "event_type": "transfr"}
MATCHED = {"matched_customer": {"id": "c"}, "matched_billable_metrics": [{"id": "m1"}]}


@pytest.mark.parametrize("event, searched, catalog, result, agrees", [
    (GOOD, MATCHED, CATALOG, "matched", True),
    (TYPO, {"matched_customer": {"id": "c"}, "matched_billable_metrics": []}, CATALOG, "no_metric", True),
    (GOOD, {"matched_customer": {"id": "c"}, "matched_billable_metrics": []}, CATALOG, "no_metric", False),  # stale catalog
    (TYPO, MATCHED, CATALOG, "matched", False),  # a metric the catalog does not know
    ({**GOOD, "customer_id": "ghost"}, {"matched_billable_metrics": [{"id": "m1"}]}, CATALOG, "no_customer", True),
    ({**GOOD, "customer_id": "acme"}, {"matched_billable_metrics": [{"id": "m1"}]}, CATALOG, "no_customer", False),
    ({**GOOD, "customer_id": "new"}, {"matched_billable_metrics": [{"id": "m1"}]}, CATALOG, "no_customer", True),  # not looked up yet
    (GOOD, None, CATALOG, "not_found", True),
    (GOOD, MATCHED, None, "matched", True),  # no catalog: nothing to compare
])
def test_a_search_answer_against_the_catalogs_prediction(event, searched, catalog, result, agrees):
    checked = compare(event, searched, catalog)
    assert (checked["result"], checked["agrees"]) == (result, agrees)


def test_the_sample_stays_bounded_whatever_the_rate():
    verifier = Verifier(None, None, None, lambda: 0.0, sample=10, interval_s=60,
                        rng=random.Random(3))
    for batch in range(100):
        verifier.delivered([SimpleNamespace(transaction_id=f"t{batch}-{i}", payload=b"{}") for i in range(100)], 0)
    assert len(verifier._candidates) == RESERVOIR
    assert len({tid for _, tid, _ in verifier._candidates}) == RESERVOIR
    assert {tid.split("-")[0] for _, tid, _ in verifier._candidates} != {"t0"}  # later batches had their chance
