"""`POST /v1/ingest` with Metronome's contract, and faults on cue for the tests.

Kept: bearer auth (401 without a token, 403 with a wrong one), a JSON array of 1..100 events,
Metronome's field rules, one bad event rejecting the whole batch with 400 `{"message"}`, dedup
on transaction_id, and 200 with an empty body. Added from production reports: a property value
over `max_property_bytes` (256 by default) rejects the whole batch too.
"""
from __future__ import annotations

import math

import re
from datetime import datetime

import orjson
from flask import Response, request

from destination.payload import exact
from destination.payload.exact import to_metronome_string
from destination.sandbox.ledger import Ledger

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", re.ASCII)
FUTURE_LIMIT_S = 24 * 3600


def event_problem(event, now_s: float, max_property_bytes: int) -> str | None:
    if not isinstance(event, dict):
        return "each event must be an object"
    for name in ("transaction_id", "customer_id", "event_type", "timestamp"):
        value = event.get(name)
        if not isinstance(value, str) or not value:
            return f"{name} is required and must be a non-empty string"
    if len(event["transaction_id"]) > 128:
        return "transaction_id must be at most 128 characters"
    try:
        if not RFC3339.match(event["timestamp"]):
            raise ValueError
        moment = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    except ValueError:  # the pattern passes 2026-02-30; the calendar does not
        return f"timestamp {event['timestamp']!r} is not RFC 3339"
    if moment.timestamp() > now_s + FUTURE_LIMIT_S:
        return "timestamp is more than 24 hours in the future"
    if "properties" in event and not isinstance(event["properties"], dict):
        return "properties must be an object"
    for key, value in (event.get("properties") or {}).items():
        size = len((to_metronome_string(value) or "").encode())
        if size > max_property_bytes:
            return f"property {key!r} is {size} bytes; values may be at most {max_property_bytes} bytes"
    return None


def take_token(bucket: dict, now_s: float) -> float:
    """Take a request from a token bucket (`per_s`, `burst`, `tokens`, `at`); return 0 when it is
    admitted, else the seconds until a token is free."""
    bucket["tokens"] = min(bucket["burst"], bucket["tokens"] + (now_s - bucket["at"]) * bucket["per_s"])
    bucket["at"] = now_s
    if bucket["tokens"] >= 1:
        bucket["tokens"] -= 1
        return 0.0
    return (1 - bucket["tokens"]) / bucket["per_s"]


def throttled_headers(wait_s: float) -> dict:
    """What a 429 says of when to come back: whole seconds, as HTTP allows, and milliseconds."""
    return {"Retry-After": str(max(1, math.ceil(wait_s))), "retry-after-ms": str(math.ceil(wait_s * 1000))}


def reply(entry: dict, status: int, message: str | None = None, headers=None) -> Response:
    entry["status"] = status
    body = orjson.dumps({"message": message}) if message is not None else b""
    return Response(body, status, headers or {}, content_type="application/json" if body else None)


def answer(ledger: Ledger, raw: bytes, entry: dict) -> Response:
    """The answer to one ingest request; the caller holds the ledger's lock."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or auth[7:] not in ledger.tokens:
        return reply(entry, 403 if auth.startswith("Bearer ") else 401, "Unauthorized")
    if ledger.rate_limit:
        wait_s = take_token(ledger.rate_limit, ledger.clock())
        if wait_s:
            return reply(entry, 429, "rate limit exceeded (sandbox)", throttled_headers(wait_s))
    if ledger.script:
        cue = ledger.script.popleft()
        if cue.get("status", 200) != 200:
            return reply(entry, cue["status"], cue.get("message", "scripted failure"), cue.get("headers"))
    try:
        batch = exact.loads(raw)
    except ValueError:
        return reply(entry, 400, "request body is not valid JSON")
    if not isinstance(batch, list):
        return reply(entry, 400, "[expected array]")
    if not 1 <= len(batch) <= 100:
        return reply(entry, 400, f"[array is too {'short' if not batch else 'long'}: must have between 1 and 100 "
                                 f"elements but instance has {len(batch)} elements]")
    now_s = ledger.clock()
    for i, event in enumerate(batch):
        problem = event_problem(event, now_s, ledger.max_property_bytes)
        if problem is None and event["transaction_id"] in ledger.reject_ids:
            problem = f"customer_id {event['customer_id']!r} is not allowed for this event (sandbox rejection)"
        if problem:
            return reply(entry, 400, f"event {i}: {problem}")
    for event in batch:
        entry["transaction_ids"].append(event["transaction_id"])
        ledger.ingest(event)
    return reply(entry, 200)
