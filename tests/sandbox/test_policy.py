"""The emulator's pure rules as tables: metric matching, aggregation, rating and windows."""
from decimal import Decimal as D
from types import SimpleNamespace

import pytest

from destination.sandbox import matching, rating, usage
from destination.sandbox.spec import ApiError


def metric(event_types=None, filters=(), kind="SUM", key="bytes"):
    return SimpleNamespace(event_type_filter=event_types, property_filters=list(filters), aggregation_type=kind,
                           aggregation_key=key)


@pytest.mark.parametrize("event_types, filters, event_type, properties, expected", [
    (None, [], "anything", {}, True),
    ({"in_values": ["transfer"]}, [], "transfer", {}, True),
    ({"in_values": ["transfer"]}, [], "transfr", {}, False),
    ({"not_in_values": ["test"]}, [], "test", {}, False),
    ({"not_in_values": ["test"]}, [], "transfer", {}, True),
    (None, [{"name": "bytes", "exists": True}], "t", {"bytes": "5"}, True),
    (None, [{"name": "bytes", "exists": True}], "t", {}, False),
    (None, [{"name": "debug", "exists": False}], "t", {"debug": "1"}, False),
    (None, [{"name": "debug", "exists": False}], "t", {}, True),
    (None, [{"name": "region", "in_values": ["eu"]}], "t", {"region": "eu"}, True),
    (None, [{"name": "region", "in_values": ["eu"]}], "t", {"region": "us"}, False),
    (None, [{"name": "region", "in_values": ["eu"]}], "t", {}, False),
    (None, [{"name": "region", "not_in_values": ["eu"]}], "t", {}, True),
    (None, [{"name": "region", "not_in_values": ["eu"]}], "t", {"region": "eu"}, False),
    (None, [{"name": "n", "in_values": ["1.5"]}], "t", {"n": D("1.50")}, True),  # values compare as stored strings
    (None, [{"name": "flag", "in_values": ["true"]}], "t", {"flag": True}, True),
    (None, [{"name": "a", "exists": True}, {"name": "b", "exists": True}], "t", {"a": "1"}, False),  # all must pass
])
def test_an_event_matches_a_metric_when_every_filter_passes(event_types, filters, event_type, properties, expected):
    assert matching.matches(metric(event_types, filters), event_type, properties) is expected


@pytest.mark.parametrize("text, expected", [
    ("5000", D(5000)), ("-1.25", D("-1.25")), ("1e3", D(1000)), (".5", D("0.5")), ("12abc", None), ("", None),
    ("NaN", None), ("Infinity", None), ("1_000", None), (" 5", None), (None, None),
])
def test_only_a_plain_decimal_adds_to_a_sum(text, expected):
    assert matching.decimal_or_none(text) == expected


@pytest.mark.parametrize("kind, values, expected", [
    ("COUNT", [D(1), D(1), D(1)], D(3)),
    ("COUNT", [], D(0)),
    ("SUM", [D(5000), D(1000)], D(6000)),
    ("SUM", [D("0.1"), D("0.2")], D("0.3")),  # exact, never float
    ("SUM", [D(5), None], D(5)),  # "12abc" adds nothing
    ("SUM", [], D(0)),
    ("MAX", [D(3), D(9), D(4)], D(9)),
    ("MAX", [], None),
    ("UNIQUE", ["a", "b", "a", None], D(2)),
    ("LATEST", [D(1), D(7), D(2)], D(2)),  # the newest timestamp
    ("LATEST", [None], None),
])
def test_aggregation_folds_contributions_exactly(kind, values, expected):
    contributions = [(1000 + i, i, value) for i, value in enumerate(values)]
    assert matching.aggregate(kind, contributions) == expected


def test_latest_breaks_a_timestamp_tie_by_the_later_ingest():
    assert matching.aggregate("LATEST", [(5, 2, D(20)), (5, 1, D(10))]) == D(20)


@pytest.mark.parametrize("body, problem", [
    ({"aggregation_type": "COUNT"}, None),
    ({"aggregation_type": "SUM", "aggregation_key": "b", "property_filters": [{"name": "b", "exists": True}]}, None),
    ({"sql": "select 1"}, "SQL billable metrics are not implemented by the sandbox: it cannot run SQL"),
    ({}, "aggregation_type is required (one of COUNT, SUM, MAX, UNIQUE, LATEST)"),
    ({"aggregation_type": "MAX"}, "aggregation_key is required for a MAX metric"),
    ({"aggregation_type": "SUM", "aggregation_key": "b", "property_filters": [{"name": "b", "exists": False}]},
     "aggregation_key 'b' must be one of the property_filters with exists: true"),
    ({"aggregation_type": "COUNT", "group_keys": [["r"]], "property_filters": [{"name": "r", "in_values": ["x"]}]},
     "group key 'r' must be one of the property_filters with exists: true"),
])
def test_metronome_refuses_a_metric_whose_keys_are_not_required_filters(body, problem):
    assert matching.metric_problem(body) == problem


TIERS = [rating.Tier(D(100), D(10)), rating.Tier(D(900), D(9)), rating.Tier(None, D(8))]


@pytest.mark.parametrize("quantity, expected", [
    (D(0), [(D(0), D(10), D(0), 1)]),
    (D(50), [(D(50), D(10), D(500), 1)]),
    (D(100), [(D(100), D(10), D(1000), 1)]),
    (D(101), [(D(100), D(10), D(1000), 1), (D(1), D(9), D(9), 2)]),
    (D(1250), [(D(100), D(10), D(1000), 1), (D(900), D(9), D(8100), 2), (D(250), D(8), D(2000), 3)]),
    (D("100.05"), [(D(100), D(10), D(1000), 1), (D("0.05"), D(9), D(0), 2)]),  # 0.45 cents rounds to 0
])
def test_a_tiered_rate_charges_each_tier_its_own_price(quantity, expected):
    assert [(c.quantity, c.unit_price, c.total, c.tier_level) for c in rating.tiered(quantity, TIERS)] == expected


@pytest.mark.parametrize("amount, cents", [(D("59.5"), D(60)), (D("59.49"), D(59)), (D("-0.5"), D(-1)), (D(60), D(60))])
def test_a_line_total_rounds_to_a_whole_cent_half_away_from_zero(amount, cents):
    assert rating.whole_cents(amount) == cents


@pytest.mark.parametrize("quantity, conversion, expected", [
    (D(1_250_000_000_000), {"conversion_factor": 10**9, "operation": "DIVIDE"}, D(1250)),
    (D(1), {"conversion_factor": 3, "operation": "DIVIDE"}, D("0.3333333333333333333333333333333333333333")),
    (D(7), {"conversion_factor": 2, "operation": "MULTIPLY"}, D(14)),
    (D(7), None, D(7)),
])
def test_quantity_conversion_is_exact(quantity, conversion, expected):
    assert rating.convert(quantity, conversion) == expected


HOUR, DAY = 3_600_000, 86_400_000


@pytest.mark.parametrize("start, end, size, expected", [
    (0, DAY, "DAY", [(0, DAY)]),
    (0, 2 * HOUR, "HOUR", [(0, HOUR), (HOUR, 2 * HOUR)]),
    (5, 10, "NONE", [(5, 10)]),
    (HOUR, DAY, "DAY", "must fall on a UTC day boundary"),
    (DAY, 0, "NONE", "ending_before must be after starting_on"),
    (0, 20_000 * HOUR, "HOUR", "more than 10000 windows"),
])
def test_usage_windows_are_whole_utc_hours_or_days(start, end, size, expected):
    if isinstance(expected, str):
        with pytest.raises(ApiError, match=expected):
            usage.windows(start, end, size)
    else:
        assert usage.windows(start, end, size) == expected
