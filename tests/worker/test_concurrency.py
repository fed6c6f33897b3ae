"""The send window's controller: a pure function, tested as a table, then against model sinks."""
import math

import pytest

from destination.worker import concurrency as c
from destination.worker.concurrency import Answer, Window


def answer(kind="ok", rtt=0.05, in_flight=4, rate=80.0, sent_at=10.0, admitted=0.0):
    return Answer(kind, rtt, in_flight, rate, sent_at, admitted)


W = Window(limit=4.0, ceiling=64, rtt_s=0.05, base_rtt_s=0.05, cut_at_s=1.0)  # past its slow start

CASES = [
    # (name, window before, answer, now, limit after, rate after, reason)
    ("a full window that is answered grows by 1/limit", W, answer(), 10.1, 4.25, None, None),
    ("before any cut, a full window grows by one per answer", Window(4.0, 64, rtt_s=0.05, base_rtt_s=0.05), answer(),
     10.1, 5.0, None, None),
    ("a window not full proves nothing: it stays", W, answer(in_flight=2), 10.1, 4.0, None, None),
    ("growth stops at the ceiling", Window(64.0, 64, rtt_s=0.05, base_rtt_s=0.05, cut_at_s=1.0), answer(in_flight=64), 10.1, 64.0, None, None),
    ("a 429 cuts the window and sets a rate below the rate sent", W, answer("throttled", rate=80), 10.1, 2.8, 68.0, "429"),
    ("a 429 sets the rate below what was admitted, when that is far lower", W, answer("throttled", rate=400, admitted=50),
     10.1, 2.8, 42.5, "429"),
    ("near the limit, below what was sent", W, answer("throttled", rate=55, admitted=45), 10.1, 2.8, 46.75, "429"),
    ("a 5xx cuts the window", W, answer("failed"), 10.1, 2.8, None, "5xx"),
    ("a timeout cuts the window", W, answer("timeout", rtt=30), 10.1, 2.8, None, "timeout"),
    ("a dropped connection cuts the window", W, answer("network", rtt=0.001), 10.1, 2.8, None, "network"),
    ("a failure sent before the last cut does not cut again", Window(4.0, 64, cut_at_s=10.05), answer("failed", sent_at=10.0),
     10.1, 4.0, None, None),
    ("a failure sent after the last cut cuts again", Window(4.0, 64, cut_at_s=9.0), answer("failed", sent_at=10.0),
     10.1, 2.8, None, "5xx"),
    ("the window never goes below one", Window(1.2, 64), answer("failed"), 10.1, 1.0, None, "5xx"),
    ("a round trip grown past twice the base, by more than 20 ms, cuts", W, answer(rtt=0.5), 10.6, 2.8, None, "rtt"),
    ("a loopback round trip that doubles by 2 ms does not", Window(4.0, 64, rtt_s=0.002, base_rtt_s=0.002, cut_at_s=1.0),
     answer(rtt=0.006), 10.1, 4.25, None, None),
    ("a second 429 lowers the rate from the ceiling, not the rate sent",
     Window(4.0, 64, rate=50.0, rtt_s=0.05, base_rtt_s=0.05, rate_cut_at_s=5.0), answer("throttled", rate=70), 10.1, 2.8, 42.5, "429"),
    ("a 429 from before the rate's last cut leaves the rate", Window(4.0, 64, rate=50.0, rate_cut_at_s=10.05, cut_at_s=10.05),
     answer("throttled", rate=70), 10.1, 4.0, 50.0, None),
    ("the rate grows by 2% of itself a second, a fiftieth of that with each of its answers", Window(4.0, 64, rate=50.0, rtt_s=0.05, base_rtt_s=0.05, cut_at_s=1.0),
     answer(in_flight=2, rate=50), 10.1, 4.0, 50.02, None),
    ("a low rate grows by at least 0.1 a second", Window(4.0, 64, rate=2.0, rtt_s=0.05, base_rtt_s=0.05, cut_at_s=1.0),
     answer(in_flight=2, rate=2), 10.1, 4.0, 2.05, None),
    ("a rate far above what is sent, with room in the window, is dropped", Window(4.0, 64, rate=50.0, rtt_s=0.05, base_rtt_s=0.05),
     answer(in_flight=1, rate=10), 10.1, 4.0, None, None),
    ("a fixed window never moves", Window(4.0, 4, adaptive=False), answer("throttled"), 10.1, 4.0, None, None),
]


@pytest.mark.parametrize("name, before, seen, now, limit, rate, reason", CASES, ids=[case[0] for case in CASES])
def test_the_window_after_one_answer(name, before, seen, now, limit, rate, reason):
    after, why = c.on_answer(before, seen, now)
    assert (round(after.limit, 2), after.rate and round(after.rate, 2), why) == (limit, rate, reason)


@pytest.mark.parametrize("status, error, kind", [
    (200, None, "ok"), (202, None, "ok"), (429, None, "throttled"), (500, None, "failed"), (503, None, "failed"),
    (408, None, "failed"), (400, None, "ok"), (403, None, "ok"),
    (None, "network error: ReadTimeout: read timed out", "timeout"), (None, "network error: ConnectionError: refused", "network"),
])
def test_the_controllers_word_for_each_answer(status, error, kind):
    assert c.kind_of(status, error) == kind


@pytest.mark.parametrize("count, since, now, rate", [
    (50, 0.0, 10.0, 50.0),  # a full second of sending: the count is the rate
    (10, 9.99, 10.0, 1000.0),  # ten requests in the first 10 ms: a thousand a second, not ten
    (1, 10.0, 10.0, 1000.0),  # a first request: its age is floored at a millisecond
    (0, 0.0, 10.0, 0.0),
])
def test_the_sent_rate_is_measured_over_the_last_second_or_the_bursts_own_age(count, since, now, rate):
    assert c.sent_rate(count, since, now) == pytest.approx(rate)


def test_a_rate_ceiling_spaces_requests_and_no_ceiling_does_not():
    assert c.next_start_s(Window(4.0, 64, rate=50.0), 10.0) == pytest.approx(10.02)
    assert c.next_start_s(Window(4.0, 64), 10.0) == -math.inf


def simulate(latency, admit, seconds=30.0, start=4, ceiling=64):
    """Drive the controller against a model sink, one request at a time in order of answer:
    `latency(in_flight)` is the sink's round trip; `admit(t)` says whether it takes a request."""
    window, now, out, sent, log = c.start(start, ceiling), 0.0, [], [], []
    last_start = -math.inf
    while now < seconds:
        while len(out) < window.size:
            begin = max(now, c.next_start_s(window, last_start))
            last_start = begin
            sent.append(begin)
            out.append((begin + latency(len(out) + 1), begin, len(out) + 1, admit(begin)))
            out.sort()
        done, began, in_flight, ok = out.pop(0)
        now = done
        rate = c.sent_rate(sum(1 for t in sent if began - 1 < t <= began), 0.0, began)
        admitted = c.sent_rate(sum(1 for t, took in log if now - 1 <= t and took), 0.0, now)
        window, _ = c.on_answer(window, Answer("ok" if ok else "throttled", done - began, in_flight, rate, began,
                                               admitted), now)
        log.append((now, ok))
    return window, log


def test_against_a_sink_whose_round_trip_grows_with_load_the_window_stays_near_its_knee():
    """20 ms plus 10 ms per request in flight: past a few requests, more only queue."""
    window, log = simulate(lambda n: 0.02 + 0.01 * n, lambda t: True)
    assert 2 <= window.size <= 12  # not the ceiling of 64, where each request would wait 660 ms


def test_against_a_flat_50_ms_sink_the_window_grows_to_the_ceiling():
    window, _ = simulate(lambda n: 0.05, lambda t: True, seconds=10)
    assert window.size == 64


def test_against_a_sink_that_admits_50_a_second_the_rate_settles_near_50_with_few_refusals():
    bucket = {"tokens": 10.0, "at": 0.0}

    def admit(t):  # a token bucket: 50 a second, bursts of 10
        bucket["tokens"] = min(10.0, bucket["tokens"] + (t - bucket["at"]) * 50)
        bucket["at"] = t
        if bucket["tokens"] >= 1:
            bucket["tokens"] -= 1
            return True
        return False

    _, log = simulate(lambda n: 0.002, admit, seconds=40)
    settled = [ok for t, ok in log if t >= 10]
    admitted_per_s = sum(settled) / 30
    assert 40 <= admitted_per_s <= 60
    assert settled.count(False) / len(settled) < 0.05
