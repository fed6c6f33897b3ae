"""How many requests to keep in flight, and how fast to start them: a pure controller.

Additive increase, multiplicative decrease, after Vector's adaptive request concurrency: while
Metronome answers and the round trip stays flat, the window grows by about one request per round
trip; a 429, a 5xx, a timeout or a round trip that has grown cuts it. A sink then runs as fast as
Metronome allows with nothing to tune.

A window alone cannot slow a worker below one request per round trip, and a rate limit of N
requests a second is reached at any window once round trips are short. So a 429 also sets a
rate ceiling below the rate that was refused (or the rate admitted, if far lower), which grows by
2% a second while nothing is refused (AWS's SDKs pace their clients on throttles the same way).

The caller passes every input, the clock included; nothing here does I/O.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

DECREASE = 0.7  # what a cut of the window keeps
RATE_DECREASE = 0.85  # what a 429 leaves of the rate it refused: gentler, as the rate is measured, not guessed
RATE_GROWTH = 0.02  # the rate ceiling grows by this share a second...
RATE_GROWTH_FLOOR = 0.1  # ...or by this many requests a second, if more, so a low ceiling can climb back
RTT_GROWTH = 2.0  # a round trip this many times the base counts as the destination struggling...
RTT_GROWTH_FLOOR_S = 0.02  # ...if it also grew by this much: loopback round trips of 1-3 ms jitter by 100%
RTT_SMOOTHING = 0.2  # weight of a new sample in the mean round trip
MIN_RATE = 0.5  # requests a second: a rate ceiling never stops delivery


@dataclass(frozen=True, slots=True)
class Window:
    limit: float  # requests in flight allowed; the worker uses floor(limit), at least 1
    ceiling: int  # MAX_SENDS_IN_FLIGHT
    adaptive: bool = True  # False: `limit` never moves (SENDS_IN_FLIGHT as a fixed number)
    rtt_s: float | None = None  # smoothed round trip
    base_rtt_s: float | None = None  # the round trip of an unloaded destination
    cut_at_s: float = -math.inf  # when the window was last cut
    rate_cut_at_s: float = -math.inf  # when the rate was last cut
    rate: float | None = None  # requests a second allowed, once a 429 has been seen

    @property
    def size(self) -> int:
        return max(1, int(self.limit))


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's outcome, as the controller sees it."""

    kind: str  # "ok", "throttled" (429), "failed" (5xx, 408), "timeout" or "network"
    rtt_s: float
    in_flight: int  # requests out when this one was sent, itself included
    sent_rate: float  # requests started in the last second
    sent_at_s: float  # when it was sent
    admitted_rate: float = 0.0  # requests a second that got a 2xx, over the last second (0: none, or unknown)


def start(limit: int, ceiling: int, adaptive: bool = True) -> Window:
    return Window(float(min(limit, ceiling)), ceiling, adaptive)


def on_answer(window: Window, answer: Answer, now_s: float) -> tuple[Window, str | None]:
    """The window after one answer, and the reason when it was cut ("429", "5xx", "timeout",
    "network", "rtt"); None when it was not."""
    if not window.adaptive:
        return window, None
    window = _track_rtt(window, answer)
    if answer.kind != "ok":
        cut = _cut(window, answer, now_s)
        if answer.kind == "throttled":
            cut = _cut_rate(cut, answer, now_s)
        return cut, (None if cut.limit == window.limit and cut.rate == window.rate else _REASONS[answer.kind])
    if _rtt_grew(window):
        cut = _cut(window, answer, now_s)
        if cut.limit == window.limit:
            return window, None
        # The mean is rebuilt from answers to the smaller window, or it would cut again and again
        # before the requests sent after this cut could show their shorter round trips.
        return dataclasses.replace(cut, rtt_s=None), "rtt"
    return _grow(window, answer), None


_REASONS = {"throttled": "429", "failed": "5xx", "timeout": "timeout", "network": "network"}


def _track_rtt(window: Window, answer: Answer) -> Window:
    if answer.kind not in ("ok", "failed") or answer.rtt_s <= 0:
        return window  # a 429 or a dropped connection answers fast: it says nothing of the load
    rtt = answer.rtt_s if window.rtt_s is None else window.rtt_s + RTT_SMOOTHING * (answer.rtt_s - window.rtt_s)
    base = window.base_rtt_s
    if base is None or answer.rtt_s < base or window.limit <= 1.0:
        # At one request in flight the round trip is the destination's own: if Metronome itself
        # became slower, this is where the base learns it, instead of cutting forever.
        base = answer.rtt_s
    return dataclasses.replace(window, rtt_s=rtt, base_rtt_s=base)


def _rtt_grew(window: Window) -> bool:
    if window.rtt_s is None or window.base_rtt_s is None:
        return False
    return window.rtt_s > window.base_rtt_s * RTT_GROWTH and window.rtt_s - window.base_rtt_s > RTT_GROWTH_FLOOR_S


def _cut(window: Window, answer: Answer, now_s: float) -> Window:
    """Multiplicative decrease, once per round trip: a request sent before the last cut was sent
    under the old window, so its failure says nothing new (and ten of them would cut to 1)."""
    if answer.sent_at_s < window.cut_at_s:
        return window
    return dataclasses.replace(window, limit=max(1.0, window.limit * DECREASE), cut_at_s=now_s)


def _cut_rate(window: Window, answer: Answer, now_s: float) -> Window:
    if answer.sent_at_s < window.rate_cut_at_s:
        return window
    refused_at = answer.sent_rate if window.rate is None else min(window.rate, answer.sent_rate)
    if 0 < answer.admitted_rate < refused_at / 2:
        # Sent far above what Metronome let through (a first burst): its admitted rate is the best
        # guess of the limit, one step where cuts of 0.85 took a refusal each, twenty for 100 -> 5.
        # Near the limit the sent rate serves better: the admitted one is lowered by the pause
        # each 429 brings, and cutting from it dipped a 50-a-second sink's admitted rate to 38.
        refused_at = answer.admitted_rate
    return dataclasses.replace(window, rate=max(MIN_RATE, refused_at * RATE_DECREASE), rate_cut_at_s=now_s)


def _grow(window: Window, answer: Answer) -> Window:
    """Additive increase: 1/limit per answer is about one more request per round trip, and only
    while the window was full; an idle window proves nothing about the destination's room."""
    limit = window.limit
    if answer.in_flight >= window.size:
        # Until the first cut, one more per answer: the window doubles each round trip (TCP's
        # slow start), so a worker reaches its pace in a few round trips, not dozens.
        step = 1.0 if window.cut_at_s == -math.inf else 1 / limit
        limit = min(float(window.ceiling), limit + step)
    rate = window.rate
    if rate is not None:
        rate += max(RATE_GROWTH_FLOOR, RATE_GROWTH * rate) / rate  # per answer, so about that much a second each second
        if rate > 2 * max(answer.sent_rate, MIN_RATE) and answer.in_flight < window.size:
            rate = None  # the ceiling no longer binds: the window, or the backlog, sets the pace
    return dataclasses.replace(window, limit=limit, rate=rate)


def kind_of(status: int | None, error: str | None) -> str:
    """The controller's word for an HTTP answer (or a network error, status None)."""
    if status is None:
        return "timeout" if error and "Timeout" in error else "network"
    if 200 <= status < 300:
        return "ok"
    if status == 429:
        return "throttled"
    if status >= 500 or status == 408:
        return "failed"
    return "ok"  # a 4xx about the events or the token says nothing about Metronome's load


def sent_rate(count: int, since_s: float, now_s: float) -> float:
    """Requests a second, from how many started in the last second and since when this worker
    has been sending without a second's break. A burst younger than a second is measured over
    its own age: a worker refused in its first 10 ms would otherwise take one request for its
    whole rate, and crawl at a request a second."""
    return count / min(1.0, max(now_s - since_s, 0.001))


def next_start_s(window: Window, last_start_s: float) -> float:
    """The earliest a request may start under the rate ceiling."""
    return last_start_s + 1 / window.rate if window.rate else -math.inf
