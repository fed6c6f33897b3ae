"""Turn a request body into events: bounded gunzip, exact-number JSON, the three body shapes."""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from destination.errors import BadRequest, EventRefused, PayloadTooLarge, first_line
from destination.payload import exact
from destination.payload.timestamps import format_ms, skew_corrected


@dataclass(frozen=True, slots=True)
class Envelope:
    """The events of one request plus the batch-level fields senders put around them."""

    events: list
    write_key: str | None = None
    context: dict | None = None
    integrations: dict | None = None
    sent_at: object = None
    single: bool = False  # the body was one event object, not an array or batch


def inflate(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Gunzip when asked, never producing more than `max_bytes` (a gzip bomb stops here)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise BadRequest(f"Content-Encoding {encoding!r} is not supported; send gzip or no encoding", code="unsupported_encoding")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}", code="invalid_gzip") from None
    if len(out) > max_bytes:
        raise PayloadTooLarge(f"inflated body exceeds {max_bytes} bytes")
    if not inflater.eof:
        raise BadRequest("gzip body is truncated", code="invalid_gzip")
    return out


def parse_body(body: bytes, max_events: int) -> Envelope:
    """Accept one event object, an array of events, or `{"batch": [...], ...}`."""
    try:
        document = exact.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"body is not valid JSON: {first_line(exc)}", code="malformed_json") from None
    if isinstance(document, list):
        envelope = Envelope(document)
    elif isinstance(document, dict) and "batch" in document:
        envelope = _batch_envelope(document)
    elif isinstance(document, dict):
        envelope = Envelope([document], write_key=_text(document.get("writeKey")), single=True)
    else:
        raise BadRequest("body must be an event object, an array of events, or {\"batch\": [...]}", code="invalid_body")
    if len(envelope.events) > max_events:
        raise PayloadTooLarge(f"request holds {len(envelope.events)} events; the limit is {max_events}", code="too_many_events")
    return envelope


def expand(envelope: Envelope, default_type: str | None = None, received_ms: int | None = None) -> list:
    """Each event as the mapping should see it: the batch's `context` and `integrations` merged in
    (the event's own keys win), the batch `sentAt` copied to events without one, the route's type
    for events without one, and, when `received_ms` is given (client SDK traffic), the timestamp
    corrected for device clock skew, keeping the device's own time as `originalTimestamp`."""
    received_at = format_ms(received_ms) if received_ms is not None else None
    events = []
    for event in envelope.events:
        if isinstance(event, dict):
            event = _merged(event, envelope, default_type)
            if received_at is not None:
                try:
                    _correct_skew(event, received_ms, received_at)
                except EventRefused as refusal:
                    event = Unreadable(event, refusal)
        events.append(event)
    return events


@dataclass(frozen=True, slots=True)
class Unreadable:
    """An event refused before mapping (a time that is not a time), kept whole for its dead letter."""

    event: dict
    refusal: EventRefused


def _merged(event: dict, envelope: Envelope, default_type: str | None) -> dict:
    out = dict(event)
    for key, batch_value in (("context", envelope.context), ("integrations", envelope.integrations)):
        if batch_value:
            own = event.get(key)
            out[key] = {**batch_value, **own} if isinstance(own, dict) else (own if own is not None else batch_value)
    if envelope.sent_at is not None and out.get("sentAt") is None:
        out["sentAt"] = envelope.sent_at
    if default_type and out.get("type") is None:
        out["type"] = default_type
    return out


def _correct_skew(event: dict, received_ms: int, received_at: str) -> None:
    """In place, on the copy `_merged` made. A timestamp the sender set counts as the original, as
    in Segment's rule."""
    own = "timestamp" if event.get("timestamp") is not None else "originalTimestamp"
    original = event.get(own)
    event["receivedAt"] = received_at
    event["timestamp"] = skew_corrected(original, event.get("sentAt"), received_ms, own)
    if original is not None and event.get("originalTimestamp") is None:
        event["originalTimestamp"] = original


def _batch_envelope(document: dict) -> Envelope:
    batch = document["batch"]
    if not isinstance(batch, list):
        raise BadRequest("'batch' must be an array of events", code="invalid_body")
    context, integrations = document.get("context"), document.get("integrations")
    return Envelope(
        batch,
        write_key=_text(document.get("writeKey")),
        context=context if isinstance(context, dict) else None,
        integrations=integrations if isinstance(integrations, dict) else None,
        sent_at=document.get("sentAt"),
    )


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None
