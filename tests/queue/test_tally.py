"""The Delivery view's counting, as pure functions: what one request adds, and how minutes fall into buckets."""
from collections import Counter

import pytest

from destination.queue import tally


@pytest.mark.parametrize("counts, codes, via, expected", [
    ({"accepted": 3, "filtered": 1, "refused": 2}, ["missing_customer_id", "missing_customer_id"], "http",
     {("received", "http"): 6, ("accepted", ""): 3, ("filtered", ""): 1, ("refused", "missing_customer_id"): 2}),
    ({"accepted": 0, "filtered": 0, "refused": 0}, [], "http", {}),
    # an event two mappings refuse is one received event and two refusals, as /metrics counts them
    ({"accepted": 0, "filtered": 0, "refused": 1}, ["a", "b"], "import",
     {("received", "import"): 1, ("refused", "a"): 1, ("refused", "b"): 1}),
    # a partial event (one mapping accepted, one refused) counts as accepted, and its refusal too
    ({"accepted": 1, "filtered": 0, "refused": 0}, ["invalid_timestamp"], "http",
     {("received", "http"): 1, ("accepted", ""): 1, ("refused", "invalid_timestamp"): 1}),
])
def test_what_one_request_adds(counts, codes, via, expected):
    assert tally.accepted(counts, codes, via) == Counter(expected)


@pytest.mark.parametrize("status, reason", [(500, "500"), (429, "429"), (None, "network_error")])
def test_a_retry_is_counted_by_metronomes_status(status, reason):
    assert tally.retry_reason(status) == reason


def test_rows_are_one_per_counter_in_key_order_at_the_minute():
    rows = tally.upsert_rows(Counter({("refused", "b"): 2, ("accepted", ""): 5, ("filtered", ""): 0}), 125_000, 7)
    assert rows == [(120_000, "accepted", "", 7, 5), (120_000, "refused", "b", 7, 2)]


@pytest.mark.parametrize("rows, since, bucket, n, series_of, totals_of, reasons_of", [
    # minute rows land in the bucket holding them; rows before or after the window are left out
    ([(0, "delivered", "", 3), (60_000, "delivered", "", 4), (120_000, "delivered", "", 5), (-60_000, "delivered", "", 9)],
     0, 60_000, 2, ("delivered", [3, 4]), ("delivered", 7), ("delivered", [{"reason": "", "count": 7}])),
    # a 15-minute bucket sums its minutes; reasons come largest first
    ([(0, "refused", "a", 1), (60_000, "refused", "b", 2), (14 * 60_000, "refused", "b", 2), (15 * 60_000, "refused", "a", 1)],
     0, 900_000, 2, ("refused", [5, 1]), ("refused", 6), ("refused", [{"reason": "b", "count": 4}, {"reason": "a", "count": 2}])),
    # an unknown kind (a newer version wrote it) is not drawn
    ([(0, "teleported", "", 1)], 0, 60_000, 1, ("received", [0]), ("received", 0), ("received", [])),
])
def test_minutes_fall_into_buckets(rows, since, bucket, n, series_of, totals_of, reasons_of):
    found = tally.buckets(rows, since, bucket, n)
    assert found["series"][series_of[0]] == series_of[1]
    assert found["totals"][totals_of[0]] == totals_of[1]
    assert found["reasons"][reasons_of[0]] == reasons_of[1]
    assert set(found["series"]) == set(tally.KINDS)


class FlakyStore:
    def __init__(self):
        self.written, self.fail = [], False

    def write(self, rows):
        if self.fail:
            raise OSError("disk full")
        self.written.append(rows)


def test_the_buffer_sums_per_minute_keeps_what_a_failed_write_held_and_writes_the_rest_at_close():
    store = FlakyStore()
    buffer = tally.Buffer(store.write, every_s=3600)  # its thread never wakes here: flushes are explicit
    buffer.add(Counter({("received", "http"): 2, ("accepted", ""): 2}), 60_000)
    buffer.add(Counter({("received", "http"): 1, ("filtered", ""): 0}), 119_999)
    buffer.add(Counter({("received", "http"): 5}), 120_000)
    store.fail = True
    with pytest.raises(OSError):
        buffer.flush()
    store.fail = False
    buffer.add(Counter({("refused", "bad"): 1}), 120_001)
    buffer.close()
    assert store.written == [[(60_000, "accepted", "", 2), (60_000, "received", "http", 3), (120_000, "received", "http", 5),
                              (120_000, "refused", "bad", 1)]]
    buffer.flush()
    assert len(store.written) == 1  # nothing pending: nothing written
