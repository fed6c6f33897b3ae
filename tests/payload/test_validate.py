"""The ingest contract, checked before an event is queued."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from destination.errors import EventRefused
from destination.payload.exact import NumberOutOfRange, to_metronome_string
from destination.payload.timestamps import epoch_ms, parse_timestamp
from destination.payload.validate import build_usage_event, outside_window, property_strings

NOW_MS = epoch_ms(parse_timestamp("2026-11-22T12:00:00Z"))
DAY_MS = 86_400_000


def fields(**changes):
    base = {"transaction_id": "t1", "customer_id": "c1", "event_type": "transfer",
            "timestamp": "2026-11-22T11:00:00Z", "properties": {"bytes": 5000}}
    base.update(changes)
    return base


def test_valid_event_takes_metronome_shape():
    usage = build_usage_event(fields(), NOW_MS)
    assert usage.event == {"transaction_id": "t1", "customer_id": "c1", "event_type": "transfer",
                           "timestamp": "2026-11-22T11:00:00.000Z", "properties": {"bytes": "5000"}}


@pytest.mark.parametrize("name", ["transaction_id", "customer_id", "event_type", "timestamp"])
@pytest.mark.parametrize("empty", [None, "", "   "])
def test_missing_required_field_is_refused_naming_it(name, empty):
    with pytest.raises(EventRefused) as refused:
        build_usage_event(fields(**{name: empty}), NOW_MS)
    assert refused.value.code == f"missing_{name}"


def test_transaction_id_of_128_characters_passes_and_129_is_refused():
    assert build_usage_event(fields(transaction_id="x" * 128), NOW_MS).transaction_id == "x" * 128
    with pytest.raises(EventRefused) as refused:
        build_usage_event(fields(transaction_id="x" * 129), NOW_MS)
    assert refused.value.code == "transaction_id_too_long"


def test_numeric_ids_become_exact_strings():
    usage = build_usage_event(fields(customer_id=123456789012345678901234567890, transaction_id=42), NOW_MS)
    assert usage.event["customer_id"] == "123456789012345678901234567890"
    assert usage.event["transaction_id"] == "42"


@pytest.mark.parametrize("value", [{"id": 1}, [1], True])
def test_structured_customer_id_is_refused(value):
    with pytest.raises(EventRefused) as refused:
        build_usage_event(fields(customer_id=value), NOW_MS)
    assert refused.value.code == "invalid_customer_id"


def test_more_than_24_hours_ahead_is_refused():
    assert build_usage_event(fields(timestamp=NOW_MS + DAY_MS - 1000), NOW_MS)
    with pytest.raises(EventRefused) as refused:
        build_usage_event(fields(timestamp=NOW_MS + DAY_MS + 1000), NOW_MS)
    assert refused.value.code == "timestamp_in_future"


def test_older_than_the_34_day_window_is_refused_with_its_age():
    assert build_usage_event(fields(timestamp=NOW_MS - 33 * DAY_MS), NOW_MS)
    with pytest.raises(EventRefused) as refused:
        build_usage_event(fields(timestamp=NOW_MS - 35 * DAY_MS), NOW_MS)
    assert refused.value.code == "timestamp_too_old"
    assert "35.0 days old" in refused.value.message


def test_window_refuses_slightly_early_so_delivery_has_headroom():
    assert outside_window(NOW_MS - 34 * DAY_MS + 60_000, NOW_MS)
    assert not outside_window(NOW_MS - 34 * DAY_MS + 3_600_000, NOW_MS)


def test_nulls_are_left_out_of_properties_and_non_object_properties_refused():
    assert build_usage_event(fields(properties={"a": None, "b": 1}), NOW_MS).event["properties"] == {"b": "1"}
    with pytest.raises(EventRefused) as refused:
        build_usage_event(fields(properties="bytes=5"), NOW_MS)
    assert refused.value.code == "invalid_properties"


@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(min_value=-10**120, max_value=10**120),
                 st.booleans(), st.text(max_size=5), st.none(), st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=2)))
def test_inlined_property_kinds_give_the_general_rule_s_strings(value):
    try:
        expected = to_metronome_string(value)
    except NumberOutOfRange:
        with pytest.raises(EventRefused):
            property_strings({"k": value})
        return
    assert property_strings({"k": value}).get("k") == expected


@pytest.mark.parametrize("value, limit, too_long", [
    ("x" * 256, 256, None),
    ("x" * 257, 256, 257),
    ("é" * 128, 256, None),  # 128 characters, 256 bytes of UTF-8
    ("é" * 129, 256, 258),  # 129 characters, but 258 bytes: counted in bytes, as Metronome counts
    ("🙂" * 65, 256, 260),
    (["a" * 100, "b" * 100, "c" * 100], 256, 310),  # an array, sent as its compact JSON text
    ({"sku": "s" * 300}, 1000, None),  # the limit is a setting
    ("x" * 11, 10, 11),
])
def test_a_property_value_longer_than_metronome_takes_is_refused_naming_the_key(value, limit, too_long):
    build = lambda: build_usage_event(fields(properties={"bytes": 1, "products": value}), NOW_MS, limit)  # noqa: E731
    if too_long is None:
        assert build().event["properties"]["bytes"] == "1"
        return
    with pytest.raises(EventRefused) as refused:
        build()
    assert refused.value.code == "property_value_too_long"
    assert f"property 'products' is {too_long} bytes" in refused.value.message and f"over {limit} bytes" in refused.value.message
