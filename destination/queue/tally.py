"""What happened to events, counted per minute for the admin page's Delivery view: pure helpers.

A tally maps (kind, reason) to a count. The queue adds it to `delivery_counts` in the same
transaction as the change it counts (see migrations._DELIVERY_VIEW), so the view's totals are
those of the stored events, for every process that shares the database.
"""
from __future__ import annotations

from collections import Counter

# In the order an event meets them; the Delivery view draws a series for each.
KINDS = ("received", "accepted", "filtered", "refused", "delivered", "retried", "dead_lettered")
MINUTE_MS = 60_000


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
    minute = now_ms - now_ms % MINUTE_MS
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
