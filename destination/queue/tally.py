"""What happened to events, counted per minute for the admin page's Delivery view: pure helpers.

A tally maps (kind, reason) to a count. The worker adds its tallies to `delivery_counts` in the
transaction that acks, retries or dead-letters the events; the accept path's go through a
`Buffer` written once a second (see migrations._DELIVERY_VIEW). Either way the view counts
every process that shares the database.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import Counter

log = logging.getLogger("destination.queue")
# In the order an event meets them; the Delivery view draws a series for each.
KINDS = ("received", "accepted", "filtered", "refused", "delivered", "retried", "dead_lettered")
MINUTE_MS = 60_000


def minute_of(ms: int) -> int:
    """The start of the minute `ms` falls in: the key every per-minute counter is stored under."""
    return ms - ms % MINUTE_MS


def accepted(counts: dict, refusal_codes: list[str], via: str) -> Counter:
    """One request's (or one import chunk's) events: received by `via` ("http" or "import"),
    accepted, filtered, and each refusal kept as a dead letter by its code."""
    tally: Counter = Counter()
    received = counts["accepted"] + counts["filtered"] + counts["refused"]
    for kind, count in (("received", received), ("accepted", counts["accepted"]), ("filtered", counts["filtered"])):
        if count:
            tally[(kind, via if kind == "received" else "")] += count
    for code in refusal_codes:
        tally[("refused", code)] += 1
    return tally


def retry_reason(status: int | None) -> str:
    """A retry is broken down by Metronome's status, as /metrics does."""
    return str(status or "network_error")


def upsert_rows(tally: Counter, now_ms: int, shard: int) -> list[tuple]:
    """(minute_ms, kind, reason, shard, count) rows, in key order so concurrent writers lock alike."""
    minute = minute_of(now_ms)
    return [(minute, kind, reason, shard, count) for (kind, reason), count in sorted(tally.items()) if count]


def buckets(rows: list[tuple], since_ms: int, bucket_ms: int, n: int) -> dict:
    """Sum (minute_ms, kind, reason, count) rows into `n` buckets from `since_ms`: per kind, the
    series and its total, and per kind the totals by reason (largest first)."""
    series = {kind: [0] * n for kind in KINDS}
    reasons: dict = {kind: Counter() for kind in KINDS}
    for minute, kind, reason, count in rows:
        index = (minute - since_ms) // bucket_ms
        if kind in series and 0 <= index < n:
            series[kind][index] += count
            reasons[kind][reason] += count
    return {"series": series, "totals": {kind: sum(values) for kind, values in series.items()},
            "reasons": {kind: [{"reason": r, "count": c} for r, c in found.most_common()] for kind, found in reasons.items()}}


FLUSH_S = 1.0


class Buffer:
    """Accept counts, added in memory and written once a second by a thread of this process.

    Written in each request's transaction they cost a single-event request 8% of its rate on
    SQLite and 14% on Postgres (A/B of the accept path): an upsert, and one more page in the WAL,
    per commit. Buffered, a process writes one small transaction a second. What a process that
    dies took in its last second is missing from the Delivery view (never its events), as it is
    from /metrics. The worker's counts stay in its own transactions, which are per batch."""

    def __init__(self, write, every_s: float = FLUSH_S):
        self._write = write  # takes [(minute_ms, kind, reason, count)]
        self.every_s = every_s
        self._pending: Counter = Counter()
        self._lock = threading.Lock()
        self._owner: tuple | None = None  # (pid, thread): a forked process starts its own, with nothing pending
        self._stop = threading.Event()

    def add(self, tally: Counter, now_ms: int) -> None:
        minute = minute_of(now_ms)
        with self._lock:
            self._adopt()
            for (kind, reason), count in tally.items():
                if count:
                    self._pending[(minute, kind, reason)] += count

    def flush(self) -> None:
        """Write what is pending now; on failure it stays pending for the next try."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        try:
            self._write([(*key, count) for key, count in sorted(pending.items())])
        except BaseException:
            with self._lock:
                self._pending.update(pending)
            raise

    def close(self) -> None:
        self._stop.set()
        pid, thread = self._owner or (None, None)
        if thread is not None and pid == os.getpid():
            thread.join(10)
        self.flush()

    def _adopt(self) -> None:
        if self._owner is None or self._owner[0] != os.getpid():
            if self._owner is not None:
                self._pending = Counter()  # the parent's, copied by fork: the parent writes them
            thread = threading.Thread(target=self._run, name="delivery-counts", daemon=True)
            self._owner = (os.getpid(), thread)
            thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.flush()
            except Exception:  # the store blinked: they are written with the next second's
                log.warning("could not write the Delivery view's counts; will retry", exc_info=True)
