"""Load a seed file: billable metrics, products, rate cards with rates, customers with contracts.

Each object is what its create route takes, checked against the same schema, plus a `key` that
later objects use to refer to it (`billable_metric`, `product`, `rate_card`) and, optionally, a
fixed `id` so that a guide's commands can name it. `guide.json` beside this file reproduces
Metronome's integration-testing guide.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from destination.sandbox import pricing
from destination.sandbox.billable_metrics import create_metric
from destination.sandbox.customers import create_customer
from destination.sandbox.ledger import Ledger
from destination.sandbox.spec import ApiError, check_body

GUIDE = "guide"  # the name of the shipped seed


def read_seed(path: str) -> dict:
    """A seed file's JSON; `guide` names the shipped one. ValueError says what is wrong."""
    if path == GUIDE:
        return json.loads(resources.files("destination.sandbox").joinpath("seeds/guide.json").read_text())
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read seed file {path}: {exc}") from None


def load_seed(book: Ledger, seed: dict) -> list[str]:
    """Create everything the seed names, in dependency order; return a line per object with its id."""
    ids: dict[tuple[str, str], str] = {}
    lines = []

    def made(kind: str, spec: dict, operation: str, make, links: dict):
        fields = {k: v for k, v in spec.items() if k not in ("key", "contract", "rates", *links)}
        try:
            for link, (target, field) in links.items():
                if link in spec:
                    fields[field] = ids[(target, spec[link])]
            check_body(operation, {k: v for k, v in fields.items() if k != "id"})
            obj = make(book, fields)
        except ApiError as exc:
            raise ValueError(f"seed {kind} {spec.get('key', spec.get('name'))!r}: {exc.message}") from None
        except KeyError as exc:
            raise ValueError(f"seed {kind} {spec.get('key', spec.get('name'))!r} names an unknown key {exc}") from None
        ids[(kind, spec.get("key", obj.id))] = obj.id
        lines.append(f"{kind} {spec.get('key', '')}: {obj.id}  ({spec.get('name', '')})")
        return obj

    with book.lock:
        for spec in seed.get("billable_metrics", []):
            made("billable_metric", spec, "POST /v1/billable-metrics/create", create_metric, {})
        for spec in seed.get("products", []):
            made("product", spec, "POST /v1/contract-pricing/products/create", pricing.create_product,
                 {"billable_metric": ("billable_metric", "billable_metric_id")})
        for spec in seed.get("rate_cards", []):
            card = made("rate_card", spec, "POST /v1/contract-pricing/rate-cards/create", pricing.create_rate_card, {})
            try:
                rates = [{**{k: v for k, v in r.items() if k != "product"}, "product_id": ids[("product", r["product"])]}
                         for r in spec.get("rates", [])]
                check_body("POST /v1/contract-pricing/rate-cards/addRates", {"rate_card_id": card.id, "rates": rates})
                pricing.add_rates(book, card.id, rates)
            except (ApiError, KeyError) as exc:
                raise ValueError(f"seed rate card {spec.get('key')!r}: {getattr(exc, 'message', exc)}") from None
        for spec in seed.get("customers", []):
            customer = made("customer", spec, "POST /v1/customers", create_customer, {})
            if "contract" in spec:
                made("contract", {"key": spec.get("key"), **spec["contract"], "customer_id": customer.id},
                     "POST /v1/contracts/create", pricing.create_contract, {"rate_card": ("rate_card", "rate_card_id")})
    return lines
