"""Every timestamp form senders use becomes RFC 3339 UTC with milliseconds."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from destination.errors import EventRefused
from destination.payload.timestamps import EPOCH, epoch_ms, format_ms, parse_timestamp, rfc3339_ms, to_rfc3339

CASES = [
    ("2026-11-20T12:30:00.123+00:00", "2026-11-20T12:30:00.123Z"),  # segment-analytics-python
    ("2026-11-20T12:30:00.123Z", "2026-11-20T12:30:00.123Z"),  # JavaScript
    ("2026-11-20T12:30:00.123000+00:00", "2026-11-20T12:30:00.123Z"),  # rudder-sdk-python
    ("2026-11-20T12:30:00.123999Z", "2026-11-20T12:30:00.123Z"),  # truncated, never rounded up
    ("2026-11-20T12:30:00.9999999Z", "2026-11-20T12:30:00.999Z"),  # nanoseconds: truncated, not carried into the next second
    ("2026-11-20T12:30:00.1234567+01:00", "2026-11-20T11:30:00.123Z"),
    ("2026-11-20T12:30:00.123456789Z", "2026-11-20T12:30:00.123Z"),  # nanoseconds (Go)
    ("2026-11-20T14:30:00+02:00", "2026-11-20T12:30:00.000Z"),
    ("2026-11-20T12:30:00-0500", "2026-11-20T17:30:00.000Z"),
    ("2026-11-20 12:30:00Z", "2026-11-20T12:30:00.000Z"),
    ("2026-11-20T12:30:00", "2026-11-20T12:30:00.000Z"),  # no offset: UTC
    ("2026-11-20", "2026-11-20T00:00:00.000Z"),
    (1763641800, "2025-11-20T12:30:00.000Z"),  # epoch seconds
    (1763641800.5, "2025-11-20T12:30:00.500Z"),
    (1763641800123, "2025-11-20T12:30:00.123Z"),  # epoch milliseconds
    ("1763641800", "2025-11-20T12:30:00.000Z"),
    ("1763641800123", "2025-11-20T12:30:00.123Z"),
    (99_999_999_999, "5138-11-16T09:46:39.000Z"),  # largest value read as seconds
    (100_000_000_000, "1973-03-03T09:46:40.000Z"),  # smallest value read as milliseconds
]


@pytest.mark.parametrize("value, expected", CASES)
def test_timestamp_is_normalised(value, expected):
    assert to_rfc3339(parse_timestamp(value)) == expected


@pytest.mark.parametrize("value", ["yesterday", "", "2026-13-01T00:00:00Z", True, None, {"t": 1}, [1], 10**30])
def test_unreadable_timestamp_is_refused_with_reason(value):
    with pytest.raises(EventRefused) as refused:
        parse_timestamp(value)
    assert refused.value.code == "invalid_timestamp"


# -- the fast paths agree with the general parser they stand in for ---------------------------------

moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc))


@given(moments)
def test_fast_parse_and_format_agree_with_the_general_parser(moment):
    for text in (moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"), moment.isoformat()):
        assert rfc3339_ms(text) == (epoch_ms(parse_timestamp(text)), to_rfc3339(parse_timestamp(text)))
    ms = epoch_ms(moment)
    expected = moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"  # truncated, in C
    assert format_ms(ms) == to_rfc3339(moment) == expected
    assert ms == (moment - EPOCH) // timedelta(milliseconds=1)


@pytest.mark.parametrize("value, expected", [
    ("2026-W47-7T19:33:12.123Z", "2026-11-22T19:33:12.123Z"),  # an ISO week date of the same length is rewritten
    ("2026-11-22 19:33:12.123Z", "2026-11-22T19:33:12.123Z"),
    ("2026-11-22T19:33:12.123z", "2026-11-22T19:33:12.123Z"),
])
def test_same_length_forms_that_are_not_rfc3339_are_rewritten(value, expected):
    assert rfc3339_ms(value)[1] == expected


@pytest.mark.parametrize("value", ["2026-11-22T24:00:00.000Z", "2026-13-22T19:33:12.123Z", "2026-11-22T1x:33:12.123Z"])
def test_same_length_nonsense_is_refused_by_the_fast_path_too(value):
    with pytest.raises(EventRefused) as refused:
        rfc3339_ms(value)
    assert refused.value.code == "invalid_timestamp"


def test_texts_already_read_are_remembered_within_a_bound_and_refusals_never_are():
    from destination.payload import timestamps

    for second in range(timestamps._KNOWN_MAX + 10):
        text = f"2026-11-20T12:{second // 60 % 60:02d}:{second % 60:02d}.{second // 3600:03d}Z"
        assert timestamps.rfc3339_ms(text) == (timestamps.epoch_ms(datetime.fromisoformat(text)), text)
        assert len(timestamps._KNOWN) <= timestamps._KNOWN_MAX
    for _ in range(2):  # a refusal is worked out again each time, with its reason
        with pytest.raises(EventRefused, match="not ISO 8601"):
            timestamps.rfc3339_ms("2026-13-45T99:00:00.000Z")
