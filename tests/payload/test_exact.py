"""Property values reach Metronome as exact strings, whichever parse path the body takes."""
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from destination.payload import exact

# (JSON literal as sent, string Metronome must receive)
PROPERTY_STRINGS = [
    ("0.1", "0.1"),
    ("1e21", "1000000000000000000000"),
    ("1E+21", "1000000000000000000000"),
    ("123456789012345678901234567890", "123456789012345678901234567890"),
    ("-123456789012345678901234567890", "-123456789012345678901234567890"),
    ("18446744073709551616", "18446744073709551616"),  # 2**64: orjson alone would make it a float
    ("3.14159265358979323846264338", "3.14159265358979323846264338"),
    ("1.5e-7", "0.00000015"),
    ("0.0042", "0.0042"),
    ("1500", "1500"),
    ("-7", "-7"),
    ("1.0", "1"),
    ("1.50", "1.5"),
    ("-0.0", "0"),
    ("0", "0"),
    ("100e-2", "1"),
    ("9007199254740993", "9007199254740993"),  # 2**53 + 1, not a double
    ("true", "true"),
    ("false", "false"),
    ('"gpt-5"', "gpt-5"),
    ('""', ""),
    ('{"a":1,"b":[1.0,"x",null,true]}', '{"a":1,"b":[1,"x",null,true]}'),
    ('[1e21,0.1]', "[1000000000000000000000,0.1]"),
    ('{"deep":{"pi":3.14159265358979323846264338}}', '{"deep":{"pi":3.14159265358979323846264338}}'),
]


@pytest.mark.parametrize("literal, expected", PROPERTY_STRINGS)
def test_property_value_becomes_its_exact_string(literal, expected):
    value = exact.loads(('{"v": %s}' % literal).encode())["v"]
    assert exact.to_metronome_string(value) == expected


def test_null_property_is_left_out():
    assert exact.to_metronome_string(exact.loads(b'{"v": null}')["v"]) is None


@pytest.mark.parametrize("literal", ["1e999999", "1e-320", "-1e400"])
def test_numbers_too_long_to_send_exactly_are_refused_not_expanded(literal):
    value = exact.loads(('{"v": %s}' % literal).encode())["v"]
    with pytest.raises(exact.NumberOutOfRange):
        exact.to_metronome_string(value)


def test_hex_ids_in_strings_do_not_force_the_slow_path():
    body = b'{"messageId": "e4f1c2a0e123", "properties": {"n": 1.5}}'
    assert not exact._risky(body)


def test_stored_raw_event_keeps_every_digit():
    body = b'{"a":3.14159265358979323846264338,"b":123456789012345678901234567890,"c":1e400}'
    assert exact.dumps(exact.loads(body)) == b'{"a":3.14159265358979323846264338,"b":123456789012345678901234567890,"c":1E+400}'


def test_lone_surrogate_is_refused_by_both_parse_paths():
    for body in (b'{"a":"\\ud800"}', b'{"a":"\\ud800","n":12345678901234567890}'):
        with pytest.raises(ValueError):
            exact.loads(body)


decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: abs(d.adjusted()) < 60)


@given(decimals)
def test_any_decimal_literal_round_trips_to_the_same_value(number):
    literal = format(number, "f") if number.adjusted() < 30 else str(number)
    text = exact.to_metronome_string(exact.loads(('{"v": %s}' % literal).encode())["v"])
    assert Decimal(text) == number
    assert "e" not in text.lower()


in_range_floats = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x == 0 or 1e-150 < abs(x) < 1e150)


@given(in_range_floats)
def test_fast_and_slow_paths_give_the_same_string(number):
    literal = repr(number)
    fast = exact.to_metronome_string(exact.loads(('{"v": %s}' % literal).encode())["v"])
    assert fast == exact.decimal_text(Decimal(literal))


json_ish = st.text(alphabet='0123456789.eE+-:,[ \t\n\x0b"abcdf{}', max_size=80).map(str.encode)
# Hex ids next to numbers: the prefilter's sign ("e123") in and out of number position.
hexy = st.lists(st.one_of(st.uuids().map(lambda u: f'"{u}"'), st.sampled_from(['1e123', '-2.5E-300', ' 9e999', '1' * 17])),
                max_size=6).map(lambda parts: ("[" + ",".join(parts) + "]").encode())


@given(st.one_of(json_ish, hexy, st.binary(max_size=60)))
def test_the_fast_prefilter_agrees_with_the_regex_it_guards(raw):
    assert exact._risky(raw) == (exact._RISKY.search(raw) is not None)


@pytest.mark.parametrize("tail, risky", [(b"1.5", False), (b"12345678901234567", True)])
def test_a_body_full_of_number_like_text_still_finds_the_risky_number(tail, risky):
    """Past the prefilter's check budget, the regex scans the body once: same answer, bounded cost."""
    body = b'{"ids": [' + b",".join(b'"x%de123"' % i for i in range(exact._MAX_CHECKS * 2)) + b'], "n": ' + tail + b"}"
    assert exact._risky(body) is risky
    assert (exact.loads(body)["n"] == Decimal(tail.decode())) is True
