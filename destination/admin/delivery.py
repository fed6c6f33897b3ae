"""The Delivery view's data: what happened to events over time, the queue now, and one event's journey.

Everything is read from the database, so any process answers for the whole deployment. The
routes are in api.py; these functions take the store and the time, so tests call them directly.
"""
from __future__ import annotations

import orjson

from destination.payload import exact
from destination.queue import senders, tally
from destination.queue.halt import PAUSED_UNTIL, halt_state

# window -> (bucket length, buckets): an hour by the minute, a day by 15 minutes, a week by the hour
WINDOWS = {"hour": (60_000, 60), "day": (900_000, 96), "week": (3_600_000, 168)}
SEARCH_KEYS = {"messageId": "message_id", "transaction_id": "transaction_id", "customer_id": "customer_id"}


def over_time(queue, now_ms: int, window: str) -> dict:
    """Per bucket of the window, each kind's count; each kind's total and its reasons."""
    queue.flush_counts()  # this process's last second of accepts; other processes' come within a second
    bucket_ms, n = WINDOWS[window]
    since = now_ms - now_ms % bucket_ms - (n - 1) * bucket_ms
    found = tally.buckets(queue.delivery_counts(since), since, bucket_ms, n)
    return {"window": window, "bucket_ms": bucket_ms, "starts_ms": [since + i * bucket_ms for i in range(n)],
            "kinds": list(tally.KINDS), **found}


def queue_now(queue, now_ms: int) -> dict:
    oldest = queue.oldest_pending_ms()
    paused_until = int(queue.get_state(PAUSED_UNTIL) or 0)
    return {"depth": queue.depth(), "oldest_pending_age_s": round(max(0, now_ms - oldest) / 1000, 3) if oldest else 0,
            "dead_letters": queue.dead_letter_count(), "halt": halt_state(queue),
            "paused_until_ms": paused_until if paused_until > now_ms else None, "claimed": queue.leases_now(now_ms),
            "sending": senders.current(queue, now_ms)}


def journey(queue, key: str, value: str, limit: int = 100) -> dict:
    """Every usage event the search finds, each with its steps in time order: received (with the
    mapping version), each delivery attempt with Metronome's answer, then delivered, still
    queued (and when it is next due) or dead-lettered with why."""
    column = SEARCH_KEYS[key]
    attempts = queue.search_deliveries(**{column: value}, limit=limit)
    found = queue.journey(column, value, limit)
    events: dict = {}
    for row in attempts:
        _step(events, row, row["received_at_ms"], row["mapping_version"], {
            "step": "attempt", "at_ms": row["at_ms"], "outcome": row["outcome"], "status": row["status"],
            "answer": row["answer"], "attempt": row["attempt"]})
    for row in found["queued"]:
        _step(events, row, row["received_at_ms"], row["mapping_version"], {
            "step": "queued", "at_ms": row["available_at_ms"], "attempts": row["attempts"], "last_error": row["last_error"]})
    for row in found["dead_letters"]:
        _step(events, row, row["received_at_ms"], row["mapping_version"], {
            "step": "dead_lettered", "at_ms": row["dead_lettered_at_ms"], "stage": row["stage"], "code": row["code"],
            "reason": row["reason"]}, event=exact.loads(row["raw"]))
    out = sorted(events.values(), key=lambda e: -max(s["at_ms"] or 0 for s in e["steps"]))
    for event in out:
        event["steps"].sort(key=lambda s: (s["at_ms"] or 0, s["step"] != "received"))
        event["fate"] = _fate(event["steps"])
    return {"search": {key: value}, "events": out, "count": len(out)}


def _step(events: dict, row: dict, received_ms, version, step: dict, event=None) -> None:
    key = row["transaction_id"] or f"dead letter {row['id']}"  # a refusal before mapping has no transaction_id
    entry = events.setdefault(key, {"transaction_id": row["transaction_id"], "message_id": row.get("message_id"),
                                    "customer_id": row.get("customer_id"), "usage_event": _payload(row), "steps": []})
    if event is not None:
        entry["event"] = event
    if received_ms is not None and not any(s["step"] == "received" for s in entry["steps"]):
        entry["steps"].append({"step": "received", "at_ms": received_ms, "mapping_version": version})
    entry["steps"].append(step)


def _payload(row: dict):
    return orjson.loads(row["payload"]) if row.get("payload") else None


def _fate(steps: list[dict]) -> str:
    """delivered, dead_lettered, queued, or (attempts seen, the row since gone) unknown."""
    if any(s.get("outcome") == "delivered" for s in steps):
        return "delivered"
    seen = {s["step"] for s in steps}
    return next((fate for fate in ("dead_lettered", "queued") if fate in seen), "unknown")
