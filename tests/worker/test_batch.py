"""Batching is pure: count cap, byte cap, and halves for splitting."""
from dataclasses import dataclass

from destination.worker.batch import batches, body, halves


@dataclass
class Item:
    payload: bytes


def test_count_cap_of_100():
    groups = batches([Item(b"{}")] * 250)
    assert [len(g) for g in groups] == [100, 100, 50]


def test_byte_cap_closes_a_batch_before_it_overflows():
    groups = batches([Item(b"x" * 40)] * 10, max_bytes=100)
    assert all(len(body(g)) <= 100 for g in groups)
    assert sum(len(g) for g in groups) == 10


def test_an_event_larger_than_the_cap_travels_alone():
    groups = batches([Item(b"a"), Item(b"b" * 500), Item(b"c")], max_bytes=100)
    assert [len(g) for g in groups] == [1, 1, 1]


def test_body_is_a_json_array_of_the_stored_payloads():
    assert body([Item(b'{"a":1}'), Item(b'{"b":2}')]) == b'[{"a":1},{"b":2}]'


def test_halves_cover_the_batch():
    left, right = halves(list(range(7)))
    assert left + right == list(range(7)) and len(left) == 3
