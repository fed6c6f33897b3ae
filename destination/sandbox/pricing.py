"""Products, rate cards and their rates, and contracts: what turns usage into money."""
from __future__ import annotations

from decimal import Decimal

from flask import Blueprint

from destination.sandbox import rating
from destination.sandbox.http import body, created, ledger, ok
from destination.sandbox.ledger import Contract, Ledger, Product, Rate, RateCard, iso, new_id, parse_ms
from destination.sandbox.spec import ApiError, found

blueprint = Blueprint("sandbox_pricing", __name__)
RATE_TYPES = ("FLAT", "TIERED")


def create_product(book: Ledger, fields: dict) -> Product:
    metric_id = fields.get("billable_metric_id")
    if fields["type"] == "USAGE":
        if not metric_id:
            raise ApiError(400, "a USAGE product needs billable_metric_id")
        metric = found(book.metrics, metric_id, "billable metric")
        allowed = {name for group in metric.group_keys for name in group}
        for key in fields.get("pricing_group_key", []) + fields.get("presentation_group_key", []):
            if key not in allowed:
                raise ApiError(400, f"group key {key!r} is not a group key of billable metric {metric.name!r}")
    product = Product(fields.get("id") or new_id(), fields["name"], fields["type"], metric_id,
                      fields.get("pricing_group_key", []), fields.get("presentation_group_key", []),
                      fields.get("quantity_conversion"))
    book.products[product.id] = product
    return product


def create_rate_card(book: Ledger, fields: dict) -> RateCard:
    card = RateCard(fields.get("id") or new_id(), fields["name"])
    book.rate_cards[card.id] = card
    return card


def add_rates(book: Ledger, card_id: str, rates: list[dict]) -> RateCard:
    """Check every rate first, then add them all: one bad rate adds none."""
    card = found(book.rate_cards, card_id, "rate card")
    card.rates.extend([_rate(book, i, fields) for i, fields in enumerate(rates)])
    return card


def _rate(book: Ledger, index: int, fields: dict) -> Rate:
    where = f"rates/{index}"
    product = book.products.get(fields["product_id"])
    if product is None:
        raise ApiError(400, f"{where}: product {fields['product_id']} not found")
    if fields["rate_type"] not in RATE_TYPES:
        raise ApiError(400, f"{where}: rate_type {fields['rate_type']} is not implemented by the sandbox (FLAT, TIERED)")
    values = fields.get("pricing_group_values", {})
    if values and set(values) != set(product.pricing_group_key):
        raise ApiError(400, f"{where}: pricing_group_values must name exactly the product's pricing_group_key "
                            f"{product.pricing_group_key}")
    tiers = [rating.Tier(None if "size" not in t else Decimal(str(t["size"])), Decimal(str(t["price"])))
             for t in fields.get("tiers", [])]
    if fields["rate_type"] == "FLAT" and "price" not in fields:
        raise ApiError(400, f"{where}: a FLAT rate needs price")
    problem = rating.tiers_problem(tiers) if fields["rate_type"] == "TIERED" else None
    if problem:
        raise ApiError(400, f"{where}: {problem}")
    price = Decimal(str(fields["price"])) if "price" in fields else None
    return Rate(product.id, fields["rate_type"], parse_ms(fields["starting_at"]),
                parse_ms(fields["ending_before"]) if "ending_before" in fields else None, values, price, tiers)


def create_contract(book: Ledger, fields: dict) -> Contract:
    customer = found(book.customers, fields["customer_id"], "customer")
    card_id = fields.get("rate_card_id")
    if not card_id:
        raise ApiError(400, "rate_card_id is required by the sandbox (it does not keep packages or aliases)")
    found(book.rate_cards, card_id, "rate card")
    contract = Contract(fields.get("id") or new_id(), customer.id, card_id, parse_ms(fields["starting_at"]),
                        parse_ms(fields["ending_before"]) if "ending_before" in fields else None, iso(book.now_ms()))
    book.contracts[contract.id] = contract
    return contract


@blueprint.post("/v1/contract-pricing/products/create")
def products_create():
    return created("POST /v1/contract-pricing/products/create", create_product)


@blueprint.post("/v1/contract-pricing/rate-cards/create")
def rate_cards_create():
    return created("POST /v1/contract-pricing/rate-cards/create", create_rate_card)


@blueprint.post("/v1/contract-pricing/rate-cards/addRates")
def rate_cards_add_rates():
    fields = body("POST /v1/contract-pricing/rate-cards/addRates")
    with ledger().lock:
        return ok({"data": {"id": add_rates(ledger(), fields["rate_card_id"], fields["rates"]).id}})


@blueprint.post("/v1/contracts/create")
def contracts_create():
    return created("POST /v1/contracts/create", create_contract)
