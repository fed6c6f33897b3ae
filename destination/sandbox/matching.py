"""Which billable metrics an event feeds, and what it adds to each: Metronome's rules, as pure functions.

Kept apart from anything the destination itself uses to predict billing, on purpose: the emulator
is the oracle our own predictions are tested against, so it must not share their code.

- `event_type_filter`: `in_values` lists the types that match, `not_in_values` those that do not;
  absent, every type matches.
- `property_filters`: all must pass. `exists: true` needs the property, `exists: false` needs it
  absent. `in_values` needs it present with its text listed; `not_in_values` fails only a
  present value whose text is listed. Values compare as the strings Metronome stores.
- SUM, MAX and LATEST read the aggregation property as a decimal. A value that is not a finite
  decimal (`"12abc"`) still matches the metric, so events/search shows it matched, but it adds
  nothing: the "accepted, matched, billed nothing" case the destination's check warns about.
"""
from __future__ import annotations

import re
from decimal import Decimal

from destination.payload.exact import to_metronome_string

AGGREGATIONS = ("COUNT", "SUM", "MAX", "UNIQUE", "LATEST")
DECIMAL = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z", re.ASCII)


def property_text(properties: dict, name: str) -> str | None:
    """The stored string of one property, or None when the event lacks it."""
    if name not in properties:
        return None
    return to_metronome_string(properties[name])


def matches(metric, event_type: str, properties: dict) -> bool:
    """Does an event of this type, with these properties, pass every filter of the metric?"""
    types = metric.event_type_filter or {}
    if "in_values" in types and event_type not in types["in_values"]:
        return False
    if event_type in types.get("not_in_values", ()):
        return False
    for rule in metric.property_filters:
        text = property_text(properties, rule["name"])
        if rule.get("exists") is True and text is None:
            return False
        if rule.get("exists") is False and text is not None:
            return False
        if "in_values" in rule and text not in rule["in_values"]:
            return False
        if text is not None and text in rule.get("not_in_values", ()):
            return False
    return True


def decimal_or_none(text: str | None) -> Decimal | None:
    """A decimal from a property's text, or None: "12abc", "NaN", "1_000" and "" add nothing.

    The pattern, not Decimal() alone, decides: Decimal() also takes "NaN", "Infinity", "1_000"
    and surrounding spaces, which are not numbers a metering system should bill."""
    if text is None or not DECIMAL.match(text):
        return None
    return Decimal(text)


def contribution(metric, properties: dict):
    """What one matched event adds: 1 for COUNT, a Decimal for SUM/MAX/LATEST (None if not a
    number), the value's text for UNIQUE."""
    if metric.aggregation_type == "COUNT":
        return Decimal(1)
    text = property_text(properties, metric.aggregation_key)
    if metric.aggregation_type == "UNIQUE":
        return text
    return decimal_or_none(text)


def aggregate(aggregation_type: str, contributions: list) -> Decimal | None:
    """Fold (at_ms, seq, value) contributions, in any order, into a metric's value.

    COUNT, SUM and UNIQUE of nothing are 0; MAX and LATEST of nothing are null, as Metronome
    answers for a window with no usage. LATEST takes the newest timestamp, then the later ingest."""
    values = [c for c in contributions if c[2] is not None]
    if aggregation_type == "COUNT":
        return Decimal(len(contributions))
    if aggregation_type == "SUM":
        return sum((c[2] for c in values), Decimal(0))
    if aggregation_type == "UNIQUE":
        return Decimal(len({c[2] for c in values}))
    if not values:
        return None
    if aggregation_type == "MAX":
        return max(c[2] for c in values)
    return max(values, key=lambda c: (c[0], c[1]))[2]  # LATEST


def metric_problem(body: dict) -> str | None:
    """Why Metronome would refuse to create this metric (beyond the schema), or None."""
    if body.get("sql"):
        return "SQL billable metrics are not implemented by the sandbox: it cannot run SQL"
    kind = body.get("aggregation_type")
    if kind is None:
        return "aggregation_type is required (one of COUNT, SUM, MAX, UNIQUE, LATEST)"
    required = {f["name"] for f in body.get("property_filters", []) if f.get("exists") is True}
    key = body.get("aggregation_key")
    if kind != "COUNT" and not key:
        return f"aggregation_key is required for a {kind} metric"
    if key and key not in required:
        return f"aggregation_key {key!r} must be one of the property_filters with exists: true"
    for group in body.get("group_keys", []):
        for name in group:
            if name not in required:
                return f"group key {name!r} must be one of the property_filters with exists: true"
    return None
