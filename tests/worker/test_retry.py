"""The delivery policy as a table: each Metronome answer and the action it must produce."""
import random

import pytest

from destination.metronome import retry_after_seconds
from destination.worker.retry import (
    DeadLetter,
    Delivered,
    Halt,
    Outcome,
    RetryLater,
    RetryPolicy,
    Split,
    decide,
)

POLICY = RetryPolicy(base_s=1, cap_s=60, halt_probe_s=30)
NOW = 1_800_000_000.0


def run(status, size=10, headers=None, body=b"", error=None, attempt=0):
    return decide(Outcome(status, headers or {}, body, error), size, attempt, POLICY, random.Random(7), NOW)


@pytest.mark.parametrize("status, size, kind", [
    (200, 100, Delivered),
    (500, 10, RetryLater), (502, 10, RetryLater), (503, 10, RetryLater), (504, 10, RetryLater),
    (408, 10, RetryLater), (409, 10, RetryLater), (429, 10, RetryLater),
    (None, 10, RetryLater),  # network error or timeout
    (400, 100, Split), (400, 2, Split), (413, 50, Split),
    (400, 1, DeadLetter), (413, 1, DeadLetter),
    (401, 10, Halt), (403, 10, Halt), (401, 1, Halt),
    (501, 10, Halt), (404, 10, Halt),
])
def test_answer_maps_to_action(status, size, kind):
    assert isinstance(run(status, size), kind)


def test_network_error_keeps_its_message_as_reason():
    action = run(None, error="network error: ConnectTimeout")
    assert action.reason == "network error: ConnectTimeout"


def test_single_bad_event_is_dead_lettered_with_metronomes_message():
    action = run(400, size=1, body=b'{"message": "event 0: customer_id is required"}')
    assert action == DeadLetter("metronome_400", "event 0: customer_id is required")


def test_429_pauses_the_whole_sender_for_retry_after():
    action = run(429, headers={"Retry-After": "2"})
    assert action == RetryLater(2.0, action.reason, pause_sender=True)


def test_5xx_does_not_pause_the_sender():
    assert run(503).pause_sender is False


def test_retry_after_ms_wins_over_retry_after():
    assert run(503, headers={"retry-after-ms": "1500", "Retry-After": "9"}).delay_s == 1.5


def test_retry_after_http_date():
    from email.utils import parsedate_to_datetime

    date = "Fri, 15 Jan 2027 08:00:10 GMT"
    assert retry_after_seconds({"Retry-After": date}, parsedate_to_datetime(date).timestamp() - 10) == 10.0
    assert retry_after_seconds({"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}, NOW) == 0.0


def test_unreadable_retry_after_falls_back_to_backoff():
    assert 0 <= run(503, headers={"Retry-After": "soon"}, attempt=3).delay_s <= 8


def test_x_should_retry_true_forces_a_retry():
    assert isinstance(run(400, size=1, headers={"x-should-retry": "true"}), RetryLater)


@pytest.mark.parametrize("attempt, ceiling", [(0, 1), (1, 2), (3, 8), (5, 32), (6, 60), (40, 60)])
def test_backoff_is_full_jitter_under_a_doubling_cap(attempt, ceiling):
    rng = random.Random(1)
    delays = [POLICY.backoff(attempt, rng) for _ in range(300)]
    assert max(delays) <= ceiling
    assert min(delays) < ceiling * 0.1  # full jitter reaches down near zero
    assert max(delays) > ceiling * 0.9


@pytest.mark.parametrize("status, pauses", [(None, True), (429, True), (500, False), (503, False), (408, False)])
def test_only_throttling_and_no_connection_pause_every_batch(status, pauses):
    action = run(status, error="network error: ConnectionError" if status is None else None)
    assert isinstance(action, RetryLater) and action.pause_sender is pauses
