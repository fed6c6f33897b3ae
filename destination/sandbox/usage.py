"""`/v1/usage` and `/v1/usage/groups`: a metric's value per customer, window and group value.

Windows are UTC hours or days, so with HOUR or DAY both ends of the range must fall on such a
boundary (the sandbox says so rather than shift them). An event belongs to the window holding its
`timestamp`. Customers are resolved through the aliases they have now.
"""
from __future__ import annotations

from datetime import datetime, timezone

from destination.sandbox import matching
from destination.sandbox.ledger import Ledger, Metric, iso, parse_ms
from destination.sandbox.spec import ApiError, found

WINDOW_MS = {"HOUR": 3_600_000, "DAY": 86_400_000}
MAX_WINDOWS = 10_000


def month_bounds(at_ms: int) -> tuple[int, int]:
    """The UTC calendar month holding `at_ms`: the sandbox's billing period."""
    moment = datetime.fromtimestamp(at_ms / 1000, tz=timezone.utc)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def windows(start_ms: int, end_ms: int, size: str) -> list[tuple[int, int]]:
    if end_ms <= start_ms:
        raise ApiError(400, "ending_before must be after starting_on")
    if size == "NONE":
        return [(start_ms, end_ms)]
    step = WINDOW_MS[size]
    if start_ms % step or end_ms % step:
        raise ApiError(400, f"with window_size {size}, starting_on and ending_before must fall on a UTC "
                            f"{size.lower()} boundary")
    if (end_ms - start_ms) // step > MAX_WINDOWS:
        raise ApiError(400, f"the range holds more than {MAX_WINDOWS} windows of {size}")
    return [(at, at + step) for at in range(start_ms, end_ms, step)]


def time_range(body: dict, ledger: Ledger) -> tuple[int, int]:
    """starting_on and ending_before, defaulting to the current billing period."""
    start, end = month_bounds(ledger.now_ms())
    return (parse_ms(body["starting_on"]) if "starting_on" in body else start,
            parse_ms(body["ending_before"]) if "ending_before" in body else end)


def check_group_keys(metric: Metric, keys: list[str]) -> None:
    allowed = {name for group in metric.group_keys for name in group}
    for key in keys:
        if key not in allowed:
            raise ApiError(400, f"{key!r} is not a group key of billable metric {metric.name!r} "
                                f"(its group keys: {sorted(allowed) or 'none'})")


def buckets(ledger: Ledger, metric: Metric, span: list[tuple[int, int]], customer_ids: set | None,
            group_keys: list[str]) -> dict:
    """{customer id: {window index: {group values: [(at_ms, seq, contribution), ...]}}} in one pass."""
    start, end = span[0][0], span[-1][1]
    step = span[0][1] - span[0][0]
    out: dict = {}
    for record, value in metric.matched:
        if not start <= record.at_ms < end:
            continue
        customer = ledger.customer_for(record.event["customer_id"])
        if customer is None or (customer_ids is not None and customer.id not in customer_ids):
            continue
        properties = record.event.get("properties") or {}
        group = tuple(matching.property_text(properties, key) for key in group_keys)
        windows_of = out.setdefault(customer.id, {})
        windows_of.setdefault((record.at_ms - start) // step, {}).setdefault(group, []).append(
            (record.at_ms, record.seq, value))
    return out


def usage(ledger: Ledger, body: dict) -> list[dict]:
    """Every row `/v1/usage` answers, before paging."""
    span = windows(parse_ms(body["starting_on"]), parse_ms(body["ending_before"]), body["window_size"])
    customer_ids = body.get("customer_ids")
    for customer_id in customer_ids or ():
        found(ledger.customers, customer_id, "customer")
    chosen = body.get("billable_metrics") or [{"id": m.id} for m in ledger.metrics.values() if m.archived_at is None]
    rows = []
    for wanted in chosen:
        metric = found(ledger.metrics, wanted["id"], "billable metric")
        group_by = wanted.get("group_by")
        keys = [group_by["key"]] if group_by else []
        check_group_keys(metric, keys)
        counted = buckets(ledger, metric, span, set(customer_ids) if customer_ids else None, keys)
        for customer in ledger.customers.values():
            if customer_ids and customer.id not in customer_ids:
                continue
            rows.extend(_rows(metric, customer.id, span, counted.get(customer.id, {}), group_by))
    return rows


def _rows(metric: Metric, customer_id: str, span, mine: dict, group_by: dict | None) -> list[dict]:
    names = []
    if group_by:
        names = group_by.get("values") or sorted({g[0] for groups in mine.values() for g in groups if g[0] is not None})
    rows = []
    for index, (start, end) in enumerate(span):
        groups = mine.get(index, {})
        row = {"customer_id": customer_id, "billable_metric_id": metric.id, "billable_metric_name": metric.name,
               "start_timestamp": iso(start), "end_timestamp": iso(end),
               "value": matching.aggregate(metric.aggregation_type, [c for cs in groups.values() for c in cs])}
        if group_by:
            row["groups"] = {name: matching.aggregate(metric.aggregation_type, groups.get((name,), [])) for name in names}
        rows.append(row)
    return rows


def usage_groups(ledger: Ledger, body: dict) -> list[dict]:
    """Every row `/v1/usage/groups` answers, before paging: one per window and group value."""
    metric = found(ledger.metrics, body["billable_metric_id"], "billable metric")
    found(ledger.customers, body["customer_id"], "customer")
    keys = body.get("group_key") or ([body["group_by"]["key"]] if body.get("group_by") else [])
    check_group_keys(metric, keys)
    start, end = time_range(body, ledger)
    span = windows(start, end, body["window_size"])
    counted = buckets(ledger, metric, span, {body["customer_id"]}, keys).get(body["customer_id"], {})
    wanted = set((body.get("group_by") or {}).get("values") or ())
    groups = sorted({g for by_group in counted.values() for g in by_group}, key=lambda g: tuple(v or "" for v in g))
    if wanted:
        groups = [g for g in groups if g[0] in wanted] + [(v,) for v in sorted(wanted - {g[0] for g in groups})]
    rows = []
    for index, (w_start, w_end) in enumerate(span):
        for group in groups or [()]:
            value = matching.aggregate(metric.aggregation_type, counted.get(index, {}).get(group, []))
            rows.append({"starting_on": iso(w_start), "ending_before": iso(w_end),
                         "group_key": keys[0] if len(keys) == 1 else None,
                         "group_value": group[0] if len(group) == 1 else None,
                         "group": {k: v for k, v in zip(keys, group) if v is not None}, "value": value})
    return rows
