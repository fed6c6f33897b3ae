"""Draft invoices: each active contract's current period, priced from its rate card.

The period is the UTC calendar month holding now, from the contract's start if that is later.
Each USAGE product on the rate card gives lines from its metric's usage in the period, one per
pricing and presentation group value, and one per tier reached. A group value with no rate (a
`gpt5` where the card prices `gpt-5`) shows its quantity with no unit price and a total of 0:
the "silently fails to rate" case, made visible.
"""
from __future__ import annotations

import uuid
from decimal import Decimal

from destination.sandbox import matching, rating
from destination.sandbox.ledger import Contract, Customer, Ledger, Product, Rate, Record, iso, parse_ms
from destination.sandbox.spec import ApiError
from destination.sandbox.usage import month_bounds

USD_CENTS = {"id": "2714e483-4ff1-48e4-9e25-ac732e8f24f2", "name": "USD (cents)"}
INVOICE_IDS = uuid.UUID("6f1c3e43-0f5d-4a53-9d8e-2d6f1b1f5b0a")  # namespace: one stable id per contract and period


def drafts(ledger: Ledger, customer: Customer, preview: list[dict] | None = None, mode: str = "replace",
           skip_zero: bool = False) -> list[dict]:
    """The customer's draft invoices, or what they would be with `preview` events added (merge)
    or in place of the period's usage (replace)."""
    now = ledger.now_ms()
    extra = _preview_usage(ledger, customer, preview or [], now)
    return [_invoice(ledger, customer, contract, now, extra, preview is not None and mode == "replace", skip_zero)
            for contract in ledger.active_contracts(customer.id, now)]


def _preview_usage(ledger: Ledger, customer: Customer, events: list[dict], now: int) -> dict[str, list]:
    """{metric id: [(record, contribution)]} for preview events, matched as if ingested now."""
    out: dict[str, list] = {}
    for i, event in enumerate(events):
        properties = event.get("properties") or {}
        try:
            at = parse_ms(event["timestamp"]) if "timestamp" in event else now
        except ValueError:  # the spec gives a preview event's timestamp no format, so it is checked here
            raise ApiError(400, f"events/{i}/timestamp: {event['timestamp']!r} is not RFC 3339") from None
        record = Record(f"preview-{i}", -1 - i, {**event, "customer_id": customer.id}, at, iso(now), False)
        for metric in ledger.metrics.values():
            if metric.archived_at is None and matching.matches(metric, event["event_type"], properties):
                out.setdefault(metric.id, []).append((record, matching.contribution(metric, properties)))
    return out


def _invoice(ledger, customer, contract: Contract, now: int, extra: dict, replace: bool, skip_zero: bool) -> dict:
    start, end = month_bounds(now)
    start = max(start, contract.starting_at_ms)
    if contract.ending_before_ms is not None:
        end = min(end, contract.ending_before_ms)
    card = ledger.rate_cards[contract.rate_card_id]
    lines = []
    for product in _usage_products(ledger, card):
        usage = [] if replace else _period_usage(ledger, customer, product.billable_metric_id, start, end)
        usage += [(r, v) for r, v in extra.get(product.billable_metric_id, []) if start <= r.at_ms < end]
        lines += _product_lines(ledger, product, card.rates, usage, start, end)
    if skip_zero:
        lines = [line for line in lines if line["quantity"]]
    total = sum((line["total"] for line in lines), Decimal(0))
    return {"id": str(uuid.uuid5(INVOICE_IDS, f"{contract.id}/{start}")), "customer_id": customer.id,
            "contract_id": contract.id, "credit_type": USD_CENTS, "status": "DRAFT", "type": "USAGE",
            "start_timestamp": iso(start), "end_timestamp": iso(end), "line_items": lines,
            "subtotal": total, "total": total}


def _usage_products(ledger: Ledger, card) -> list[Product]:
    seen = dict.fromkeys(rate.product_id for rate in card.rates)
    return [ledger.products[p] for p in seen if ledger.products[p].type == "USAGE" and ledger.products[p].billable_metric_id]


def _period_usage(ledger: Ledger, customer: Customer, metric_id: str, start: int, end: int) -> list:
    """The metric's matched events in the period whose customer_id names this customer today."""
    out = []
    for record, value in ledger.metrics[metric_id].matched:
        if start <= record.at_ms < end:
            owner = ledger.customer_for(record.event["customer_id"])
            if owner is not None and owner.id == customer.id:
                out.append((record, value))
    return out


def _product_lines(ledger, product: Product, rates: list[Rate], usage: list, start: int, end: int) -> list[dict]:
    metric = ledger.metrics[product.billable_metric_id]
    keys = product.pricing_group_key + [k for k in product.presentation_group_key if k not in product.pricing_group_key]
    groups: dict[tuple, list] = {}
    for record, value in usage:
        properties = record.event.get("properties") or {}
        group = tuple(matching.property_text(properties, key) for key in keys)
        groups.setdefault(group, []).append((record.at_ms, record.seq, value))
    if not groups and not keys:
        groups[()] = []
    lines = []
    for group, contributions in sorted(groups.items(), key=lambda item: tuple(v or "" for v in item[0])):
        values = dict(zip(keys, group))
        pricing = {k: values[k] for k in product.pricing_group_key if values[k] is not None}
        quantity = rating.convert(matching.aggregate(metric.aggregation_type, contributions) or Decimal(0),
                                  product.quantity_conversion)
        rate = _rate_for(rates, product, pricing, start)
        base = {"name": product.name, "product_id": product.id, "product_type": "USAGE", "type": "usage",
                "credit_type": USD_CENTS, "starting_at": iso(start), "ending_before": iso(end),
                "pricing_group_values": pricing,
                "presentation_group_values": {k: values[k] for k in product.presentation_group_key}}
        if rate is None:  # usage that no rate prices: shown, and billed nothing
            lines.append({**base, "quantity": quantity, "total": Decimal(0)})
            continue
        for charge in _charges(quantity, rate):
            line = {**base, "quantity": charge.quantity, "unit_price": charge.unit_price, "total": charge.total,
                    "list_price": _list_price(rate)}
            if charge.tier_level is not None:
                line["tier"] = {"level": charge.tier_level, "starting_at": str(charge.tier_start),
                                "size": None if charge.tier_size is None else str(charge.tier_size)}
            lines.append(line)
    return lines


def _rate_for(rates: list[Rate], product: Product, pricing: dict, at_ms: int) -> Rate | None:
    """The rate for this product and pricing group values: an exact match of the values, or a rate
    that names none; None when the card has neither (the value fails to rate)."""
    exact = general = None
    for rate in rates:
        if rate.product_id != product.id or not rate.active_at(at_ms):
            continue
        if rate.pricing_group_values and rate.pricing_group_values == pricing:
            exact = rate
        elif not rate.pricing_group_values:
            general = rate
    return exact or general


def _charges(quantity: Decimal, rate: Rate) -> list[rating.Charge]:
    if rate.rate_type == "TIERED":
        return rating.tiered(quantity, rate.tiers)
    return rating.flat(quantity, rate.price)


def _list_price(rate: Rate) -> dict:
    if rate.rate_type == "TIERED":
        return {"rate_type": "TIERED", "tiers": [{"price": t.price, **({} if t.size is None else {"size": t.size})}
                                                 for t in rate.tiers]}
    return {"rate_type": rate.rate_type, "price": rate.price}
