"""Reading events from files, as a table of inputs: what each line or element becomes."""
import gzip
import io
import re

import pytest

from destination.intake.files import NotJSON, Source, parsed, read_events


def items(content: bytes, max_event_bytes: int = 1000) -> list[tuple]:
    source = Source("-", stdin=io.BufferedReader(io.BytesIO(content)))
    return [(i.number, i.event, i.problem[0] if i.problem else None) for i in map(parsed, read_events(source, max_event_bytes))]


@pytest.mark.parametrize("content, expected", [
    (b"", []),
    (b"\n \n", []),
    (b'{"a": 1}\n{"b": 2}', [(1, {"a": 1}, None), (2, {"b": 2}, None)]),  # no newline at the end
    (b'\n\n{"a": 1}\r\n\n{"b": 2}\n', [(3, {"a": 1}, None), (5, {"b": 2}, None)]),  # blank lines keep the numbering
    (b'\xef\xbb\xbf{"a": 1}\n', [(1, {"a": 1}, None)]),  # a byte-order mark
    (b'{"a": 1}\n{"a": \n[1, 2]\n"text"\n', [(1, {"a": 1}, None), (2, None, "malformed_json"), (3, [1, 2], None),
                                             (4, "text", None)]),  # not objects: the pipeline refuses them
    (b'{"a": "\xff"}\n', [(1, None, "malformed_json")]),  # not UTF-8
    (b'{"a": "' + b"x" * 2000 + b'"}\n{"b": 1}\n', [(1, None, "event_too_large"), (2, {"b": 1}, None)]),
    (b'[]', []),
    (b' [ {"a": 1} , {"b": 2.50} ]', [(1, {"a": 1}, None), (2, {"b": 2.5}, None)]),
    (b'[{"a": 1}, "x", 3]', [(1, {"a": 1}, None), (2, "x", None), (3, 3, None)]),
    (gzip.compress(b'{"a": 1}\n'), [(1, {"a": 1}, None)]),
    (gzip.compress(b'[{"a": 1}]'), [(1, {"a": 1}, None)]),
])
def test_each_line_or_element(content, expected):
    assert items(content) == expected


def test_a_number_past_a_double_is_kept_exactly_in_lines_and_in_arrays():
    literal = b"0.1000000000000000055511151231257827"
    for content in (b'{"n": ' + literal + b"}\n", b'[{"n": ' + literal + b"}]"):
        (_, event, _), = items(content)
        assert str(event["n"]) == literal.decode()


@pytest.mark.parametrize("content, message", [
    (b"a,b\n1,2\n", "not JSON: it starts with b'a'"),
    (b"\x00\x01", "not JSON: it starts with b'\\x00'"),
    (b'[{"a": 1}, {"a": ]', "element 2 of the JSON array"),
    (b'[{"a": 1}', "element 2 of the JSON array"),  # the array never closes
    (b'[' + b'{"a": "' + b"x" * 300_000, "does not end within"),  # bounded memory: no event is that long
    (gzip.compress(b'{"a": 1}\n' * 10)[:-8], "not a whole gzip file"),
])
def test_input_that_cannot_be_read_as_events(content, message):
    with pytest.raises(NotJSON, match=re.escape(message)):
        items(content)


def test_what_came_before_a_broken_array_element_is_read():
    source = Source("-", stdin=io.BufferedReader(io.BytesIO(b'[{"a": 1}, {"b": 2}, nope]')))
    found = []
    with pytest.raises(NotJSON, match="element 3"):
        for item in read_events(source, 1000):
            found.append(parsed(item).event)
    assert found == [{"a": 1}, {"b": 2}]
