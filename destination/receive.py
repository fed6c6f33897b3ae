"""The CDP-facing route: receive -> authenticate -> parse -> map -> validate -> queue -> 200.

The answer comes only after the accepted events and the refused ones are committed together,
so a 200 always means "stored"; a store that cannot be written answers 503 so the sender retries.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
from flask import Blueprint, current_app, request

from . import exact
from .authenticate import presented_key, source_for
from .errors import EventRefused, QueueUnavailable
from .mapping import MappingSet, map_event
from .parse import inflate, parse_body
from .queue import DeadLetter, QueuedEvent
from .validate import build_usage_event

log = logging.getLogger("destination.receive")
blueprint = Blueprint("receive", __name__)


@dataclass(slots=True)
class Processed:
    """What one request's events became: rows to queue, refusals to keep, and per-event results."""

    rows: list = field(default_factory=list)
    dead_letters: list = field(default_factory=list)
    results: list = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"accepted": 0, "filtered": 0, "refused": 0})


def process_events(events: list, mapping_set: MappingSet, now_ms: int, max_event_bytes: int) -> Processed:
    """Map and validate every event; pure, so the benchmark and tests call it directly."""
    out = Processed()
    for index, event in enumerate(events):
        raw = exact.dumps(event)
        accepted, refusals = _process_one(event, raw, mapping_set, now_ms, max_event_bytes, out.rows)
        status = "refused" if refusals and not accepted else "partial" if refusals else "accepted" if accepted else "filtered"
        out.counts["accepted" if status == "partial" else status] += 1
        result = {"index": index, "status": status}
        if isinstance(event, dict) and isinstance(event.get("messageId"), str):
            result["messageId"] = event["messageId"]
        if accepted:
            result["transaction_ids"] = accepted
        if refusals:
            result["errors"] = [{"mapping": name, "code": r.code, "message": r.message} for name, r in refusals]
            out.dead_letters.extend(
                DeadLetter(raw, r.code, f"{name}: {r.message}" if name else r.message, mapping_set.version, "receive")
                for name, r in refusals
            )
        out.results.append(result)
    return out


def _process_one(event, raw: bytes, mapping_set: MappingSet, now_ms: int, max_event_bytes: int, rows: list):
    """Return (transaction_ids accepted, [(mapping name, EventRefused)]) and append queue rows."""
    if not isinstance(event, dict):
        return [], [(None, EventRefused("not_an_object", f"an event must be a JSON object, not {type(event).__name__}"))]
    if len(raw) > max_event_bytes:
        return [], [(None, EventRefused("event_too_large", f"event is {len(raw)} bytes; the limit is {max_event_bytes}"))]
    accepted, refusals = [], []
    for mapping, values in map_event(mapping_set, event):
        try:
            if isinstance(values, EventRefused):
                raise values
            usage = build_usage_event(values, now_ms)
            if usage.transaction_id in accepted:
                # Two mappings giving one transaction_id would make Metronome drop the second as a
                # duplicate: lost usage. Refuse it loudly so the admin gives each mapping its own id.
                raise EventRefused("duplicate_transaction_id", f"another mapping already produced transaction_id {usage.transaction_id!r}")
        except EventRefused as refusal:
            refusals.append((mapping.name, refusal))
            continue
        accepted.append(usage.transaction_id)
        rows.append(QueuedEvent(usage.transaction_id, orjson.dumps(usage.event), raw, mapping_set.version, usage.timestamp_ms))
    return accepted, refusals


@blueprint.post("/v1/events")
def receive_events():
    runtime = current_app.extensions["destination"]
    settings = runtime.settings
    body = inflate(request.get_data(cache=False), request.headers.get("Content-Encoding"), settings.max_request_bytes)
    envelope = parse_body(body, settings.max_batch_events)
    source_for(presented_key(request.headers.get("Authorization"), envelope.write_key),
               settings.write_keys, settings.allow_unauthenticated)
    now_ms = runtime.now_ms()
    processed = process_events(envelope.events, runtime.mapping_set, now_ms, settings.max_event_bytes)
    try:
        runtime.queue.enqueue(processed.rows, processed.dead_letters, now_ms)
    except Exception as exc:
        log.exception("could not store %d events", len(processed.rows))
        raise QueueUnavailable("the event store is unavailable; nothing was accepted, retry later", retry_after=5) from exc
    return current_app.response_class(
        orjson.dumps({**processed.counts, "events": processed.results}), 200, mimetype="application/json"
    )
