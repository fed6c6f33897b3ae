"""Check a mapped usage event against Metronome's ingest contract and give it its final shape.

Pure: the clock comes in as `now_ms`. The same window rule serves the accept path (refuse at the
door) and the worker (dead-letter before sending what Metronome would drop).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from destination.errors import EventRefused
from destination.payload.exact import NumberOutOfRange, decimal_text, to_metronome_string
from destination.payload.timestamps import rfc3339_ms

MAX_TRANSACTION_ID = 128
WINDOW_MS = timedelta(days=34) // timedelta(milliseconds=1)
# Refuse a little before Metronome would, so an event accepted now is not already stale when
# its batch lands; delivery takes seconds, so ten minutes is ample headroom.
WINDOW_HEADROOM_MS = 10 * 60 * 1000
FUTURE_LIMIT_MS = 24 * 3600 * 1000
REQUIRED = ("transaction_id", "customer_id", "event_type", "timestamp")
# Production users report that Metronome refuses a whole batch when one property value is longer
# than this; MAX_PROPERTY_VALUE_BYTES overrides it.
MAX_PROPERTY_VALUE_BYTES = 256


@dataclass(frozen=True, slots=True)
class Limits:
    """The sizes an event must keep to: MAX_EVENT_BYTES for the raw event we store, and
    MAX_PROPERTY_VALUE_BYTES for each property value Metronome receives."""

    event_bytes: int = 32 * 1024
    value_bytes: int = MAX_PROPERTY_VALUE_BYTES


@dataclass(slots=True)  # per event: not frozen, see QueuedEvent
class UsageEvent:
    """A Metronome event ready to queue: the dict to send plus what the queue indexes."""

    event: dict
    timestamp_ms: int

    @property
    def transaction_id(self) -> str:
        return self.event["transaction_id"]


def outside_window(timestamp_ms: int, now_ms: int) -> bool:
    """True when Metronome's 34-day backdating window has passed (or is about to) for this time."""
    return timestamp_ms < now_ms - WINDOW_MS + WINDOW_HEADROOM_MS


def window_reason(timestamp_ms: int, now_ms: int) -> str:
    age_days = (now_ms - timestamp_ms) / 86_400_000
    return f"timestamp is {age_days:.1f} days old; Metronome only accepts events up to 34 days old"


def build_usage_event(fields: dict, now_ms: int, max_value_bytes: int = MAX_PROPERTY_VALUE_BYTES) -> UsageEvent:
    """Validate mapped values and return the Metronome event; raise EventRefused with the reason."""
    for name in REQUIRED:
        value = fields.get(name)
        if value is None or (type(value) is str and not value.strip()):  # absent, or blank text
            raise EventRefused(f"missing_{name}", f"{name} is required but the mapping found no value")
    transaction_id = _scalar_text("transaction_id", fields["transaction_id"])
    if len(transaction_id) > MAX_TRANSACTION_ID:
        raise EventRefused(
            "transaction_id_too_long",
            f"transaction_id has {len(transaction_id)} characters; Metronome allows at most {MAX_TRANSACTION_ID}",
        )
    timestamp_ms, timestamp = rfc3339_ms(fields["timestamp"])
    if timestamp_ms > now_ms + FUTURE_LIMIT_MS:
        raise EventRefused("timestamp_in_future", "timestamp is more than 24 hours in the future")
    if outside_window(timestamp_ms, now_ms):
        raise EventRefused("timestamp_too_old", window_reason(timestamp_ms, now_ms))
    event = {
        "transaction_id": transaction_id,
        "customer_id": _scalar_text("customer_id", fields["customer_id"]),
        "event_type": _scalar_text("event_type", fields["event_type"]),
        "timestamp": timestamp,
    }
    properties = fields.get("properties")
    if properties:
        event["properties"] = strings = property_strings(properties)
        # A character is at most 4 bytes of UTF-8: one C-level pass over the lengths spares
        # encoding every value of every event, and only a value this long can be too long.
        if strings and max(map(len, strings.values())) * 4 > max_value_bytes:
            _refuse_long_values(strings, max_value_bytes)
    return UsageEvent(event, timestamp_ms)


def _refuse_long_values(properties: dict, max_value_bytes: int) -> None:
    """Refuse the event when a value is longer than Metronome takes: delivered, it would make
    Metronome refuse its whole batch, and the other events in it with it."""
    for key, value in properties.items():
        size = len(value.encode())
        if size > max_value_bytes:
            raise EventRefused("property_value_too_long", f"property {key!r} is {size} bytes; Metronome refuses a "
                               f"batch holding a value over {max_value_bytes} bytes. Exclude it in the mapping, "
                               'or cut it with the {"truncate": N} transform')


def property_strings(properties) -> dict:
    """Every property value as its exact Metronome string; nulls are left out."""
    if not isinstance(properties, dict):
        raise EventRefused("invalid_properties", f"properties must be an object, not {type(properties).__name__}")
    out = {}
    try:
        for key, value in properties.items():
            if type(value) is str:  # most values: no call
                out[key] = value
                continue
            text = to_metronome_string(value)
            if text is not None:
                out[key] = text
    except NumberOutOfRange as exc:
        raise EventRefused("number_out_of_range", f"property {key!r}: {exc}") from None
    return out


def _scalar_text(name: str, value) -> str:
    """Identifiers may arrive as numbers (userId 42); objects, arrays and booleans are refused,
    and so is a NUL character, which a Postgres text column cannot hold: stored, it would fail
    the whole request with a 503 on every retry, and the other events with it."""
    if isinstance(value, str):
        if "\x00" in value:
            raise EventRefused(f"invalid_{name}", f"{name} contains a NUL character (\\u0000)")
        return value
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        try:
            return decimal_text(value)
        except NumberOutOfRange as exc:
            raise EventRefused("number_out_of_range", f"{name}: {exc}") from None
    raise EventRefused(f"invalid_{name}", f"{name} must be a string or number, not {type(value).__name__}")
