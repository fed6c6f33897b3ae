"""Will this usage event bill? A pure verdict from the event and the account's catalog.

Metronome answers 200 to an event that matches no billable metric, or names no customer, and
that usage bills nothing. The matcher applies Metronome's matching rules (see the sandbox's
`matching.py` for the oracle the tests hold it to) and, when an event bills nothing, says why
and what to fix. Metrics are indexed by the event types they accept, so an event is tested only
against the metrics that could take it.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

MISSING = object()
DECIMAL_MATCH = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z", re.ASCII).match
NUMERIC = frozenset({"SUM", "MAX", "LATEST"})  # aggregations that read their property as a number
# Problems that lose the usage for good; `hold` sets such events aside. The others may resolve
# by themselves (an alias added later matches events already sent).
BILLS = {"bills": True}  # the accept path's answer for a clean verdict: one shared object
LOSES_USAGE = frozenset({"no_billable_metric", "missing_aggregation_property", "aggregation_value_not_numeric"})


@dataclass(frozen=True, slots=True)
class Metric:
    id: str
    name: str
    event_types: frozenset | None  # in_values; None: any type
    not_event_types: frozenset
    filters: tuple  # the property_filters, as Metronome gives them
    aggregation_type: str
    aggregation_key: str | None
    group_keys: tuple
    sql: bool = False
    # The filters split for speed: most are a bare `exists: true`, tested as a name lookup.
    required: tuple = ()
    required_set: frozenset = frozenset()
    other_filters: tuple = ()

    @classmethod
    def from_api(cls, data: dict) -> "Metric":
        types = data.get("event_type_filter") or {}
        filters = tuple(data.get("property_filters") or ())
        bare = [f for f in filters if f.get("exists") is True and "in_values" not in f and "not_in_values" not in f]
        return cls(data["id"], data["name"], frozenset(types["in_values"]) if "in_values" in types else None,
                   frozenset(types.get("not_in_values", ())), filters,
                   data.get("aggregation_type") or "", data.get("aggregation_key"),
                   tuple(k for group in data.get("group_keys") or () for k in group), bool(data.get("sql")),
                   tuple(f["name"] for f in bare), frozenset(f["name"] for f in bare),
                   tuple(f for f in filters if f not in bare))


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    message: str

    def as_json(self) -> dict:
        return {"code": self.code, "message": self.message}


class Verdict:
    """What one usage event bills: each (metric, what it adds), and every problem found."""

    __slots__ = ("bills", "problems", "properties")

    def __init__(self, properties: dict):
        self.bills: list = []
        self.problems: list = []
        self.properties = properties  # for the group values the detailed form shows

    @property
    def loses_usage(self) -> bool:
        return any(p.code in LOSES_USAGE for p in self.problems)

    def answer(self) -> dict:
        """The accept path's form: `{"bills": true}` alone when all is well (most events, so it is one
        shared object and costs nothing to build), else the whole verdict with its problems."""
        return BILLS if self.bills and not self.problems else self.as_json()

    def as_json(self) -> dict:
        """`bills`: true, false, or null when the event could not be checked; each metric with what it adds."""
        unchecked = any(p.code == "catalog_unavailable" for p in self.problems)
        out: dict = {"bills": None if unchecked else bool(self.bills) and not self.loses_usage}
        if self.bills:
            out["metrics"] = []
            for metric, adds in self.bills:
                groups = {k: self.properties[k] for k in metric.group_keys if k in self.properties}
                out["metrics"].append({"id": metric.id, "name": metric.name, "adds": adds,
                                       **({"key": metric.aggregation_key} if metric.aggregation_key else {}),
                                       **({"groups": groups} if groups else {})})
        if self.problems:
            out["problems"] = [p.as_json() for p in self.problems]
        return out


class Catalog:
    """The account as far as billing needs it: live metrics, and the customer ids looked up so far."""

    def __init__(self, metrics: list[Metric], customers: dict[str, bool], refreshed_ms: int | None):
        self.metrics = [m for m in metrics]
        self.customers = customers  # id or alias -> known (True) or looked up and not found (False)
        self.refreshed_ms = refreshed_ms
        self.untyped = tuple(m for m in metrics if m.event_types is None)
        self.by_type: dict[str, tuple] = {}
        for metric in metrics:
            for event_type in metric.event_types or ():
                self.by_type[event_type] = self.by_type.get(event_type, self.untyped) + (metric,)
        self.has_sql = any(m.sql for m in metrics)
        self.plans = {} if self.untyped or self.has_sql else {
            event_type: _plan(typed) for event_type, typed in self.by_type.items() if typed and _plain(typed)}
        self.clean_test = clean_test(self.plans, customers)


def _plain(metrics: tuple) -> bool:
    """True when each metric filters only on event type and bare `exists: true` properties."""
    return not any(m.sql or m.other_filters or m.not_event_types for m in metrics)


def _plan(metrics: tuple) -> tuple:
    """The accept path's test for one event type, made once per catalog: the properties every
    metric for the type requires, and each property a metric reads as a number. An event holding
    all of them, with numbers there, feeds every one of those metrics."""
    required = frozenset().union(*(m.required_set for m in metrics))
    numeric = tuple(dict.fromkeys(m.aggregation_key for m in metrics if m.aggregation_type in NUMERIC))
    return required, numeric


def clean_test(plans: dict, customers: dict):
    """The accept path's fast test, made once per catalog: a function of one usage event.

    Decided without building anything, since it runs for every usage event: two dict lookups,
    one C-level set test, and a look at each number, with the catalog's parts in closure cells
    (faster to reach than attributes). Anything else (a property a metric needs is missing, an
    untyped or filtered metric, a customer not yet known) goes to `verdict`, which says exactly
    what and why. Property values were measured when the event was built (a value too long is
    refused there), so none is measured here."""
    plan_for, known, decimal = plans.get, customers.get, DECIMAL_MATCH

    def test(event: dict) -> bool:
        plan = plan_for(event["event_type"])
        if plan is None or known(event["customer_id"]) is not True:
            return False
        required, numeric = plan
        properties = event.get("properties") or {}
        if not properties.keys() >= required:
            return False
        for key in numeric:
            value = properties.get(key, "")
            # str.isdigit is one C call, and most counts are plain digits; isascii rules out the
            # other scripts' digits ("²", "٣") that Metronome would not read as a number.
            if not (value.isdigit() and value.isascii()) and not decimal(value):
                return False
        return True
    return test


def verdict(event: dict, catalog: Catalog | None) -> Verdict:
    """What this usage event (as Metronome receives it) will bill, and every reason it will not.

    The event has passed validation, which refuses a property value Metronome would refuse
    (`property_value_too_long`, payload/validate.py), so lengths are not measured again here."""
    properties = event.get("properties") or {}
    out = Verdict(properties)
    if catalog is None:
        out.problems.append(Problem("catalog_unavailable", "the billing catalog could not be read from Metronome yet, "
                                    "so this event was not checked"))
        return out
    _metrics(event["event_type"], properties, catalog, out)
    known = catalog.customers.get(event["customer_id"], MISSING)
    if known is MISSING:
        out.problems.append(Problem("customer_lookup_pending", f"customer_id {event['customer_id']!r} is being looked up "
                                    "in Metronome; the next events will say whether it is known"))
    elif known is False:
        out.problems.append(Problem("unknown_customer", f"no Metronome customer has the id or ingest alias "
                                    f"{event['customer_id']!r}. Its usage bills once a customer gets that alias"))
    return out


def _metrics(event_type: str, properties: dict, catalog: Catalog, out: Verdict) -> None:
    """Every metric this event feeds, into `out`; when it feeds none, the problem that says why.

    Written for speed, as it runs for every usage event: the bare `exists: true` filters are one
    C-level keys-view check, and the aggregation value is read inline."""
    nearest = None  # (metric, the filter it failed): the best hint when nothing matches
    keys = properties.keys()
    for metric in catalog.by_type.get(event_type, catalog.untyped):
        if metric.sql or event_type in metric.not_event_types:
            continue
        if not keys >= metric.required_set or metric.other_filters:
            failed = _failed_filter(metric, properties)
            if failed is not None:
                nearest = nearest or (metric, failed)
                continue
        kind = metric.aggregation_type
        if kind == "COUNT":
            out.bills.append((metric, "1"))
            continue
        value = properties.get(metric.aggregation_key)
        if kind in NUMERIC and (value is None or not DECIMAL_MATCH(value)):
            out.problems.append(Problem("aggregation_value_not_numeric", f"metric {metric.name!r} reads property "
                                        f"{metric.aggregation_key!r} as a number, but it is {value!r}: it adds nothing"))
            continue
        out.bills.append((metric, value))
    if out.bills or any(p.code == "aggregation_value_not_numeric" for p in out.problems) or catalog.has_sql:
        return  # a SQL metric cannot be evaluated here: it may match, so say nothing
    if nearest is not None:
        metric, rule = nearest
        if rule.get("exists") is True and rule["name"] == metric.aggregation_key:
            out.problems.append(Problem("missing_aggregation_property", f"metric {metric.name!r} sums property "
                                        f"{rule['name']!r}, which this event lacks: map it into the properties"))
        else:
            out.problems.append(Problem("no_billable_metric", f"metric {metric.name!r} takes event_type {event_type!r} "
                                        f"but its filter {_describe(rule)} does not pass"))
        return
    out.problems.append(Problem("no_billable_metric", _no_metric_message(event_type, catalog)))


def _failed_filter(metric: Metric, properties: dict) -> dict | None:
    for name in metric.required:
        if name not in properties:
            return next(f for f in metric.filters if f["name"] == name and f.get("exists") is True)
    for rule in metric.other_filters:
        value = properties.get(rule["name"])
        if rule.get("exists") is True and value is None:
            return rule
        if rule.get("exists") is False and value is not None:
            return rule
        if "in_values" in rule and value not in rule["in_values"]:
            return rule
        if value is not None and value in rule.get("not_in_values", ()):
            return rule
    return None


def _describe(rule: dict) -> str:
    if rule.get("exists") is not None:
        return f"{rule['name']!r} {'exists' if rule['exists'] else 'is absent'}"
    if "in_values" in rule:
        return f"{rule['name']!r} in {rule['in_values']}"
    return f"{rule['name']!r} not in {rule.get('not_in_values')}"


def _no_metric_message(event_type: str, catalog: Catalog) -> str:
    types = sorted({t for m in catalog.metrics if not m.sql for t in m.event_types or ()})
    close = difflib.get_close_matches(event_type, types, n=1, cutoff=0.6)
    if close:
        names = [m.name for m in catalog.by_type[close[0]] if m.event_types]
        return (f"no billable metric takes event_type {event_type!r}; did you mean {close[0]!r} "
                f"(metric {names[0]!r})? Fix the mapping's event_type, or create a metric for it")
    return f"no billable metric takes event_type {event_type!r}: create one in Metronome, or map to one of {types[:10]}"


class _Clean:
    """The verdict a passed `clean_test` stands for: it bills, and there is nothing to say."""

    __slots__ = ()
    problems = ()  # what the accept path reads: nothing to report, nothing to hold

    def answer(self) -> dict:
        return BILLS


CLEAN = _Clean()
