"""Customers and their ingest aliases: `/v1/customers`, `/v1/customers/{id}`, `setIngestAliases`."""
from __future__ import annotations

from flask import Blueprint, Response, request

from destination.sandbox.http import body, ledger, ok
from destination.sandbox.ledger import Customer, Ledger, iso, new_id
from destination.sandbox.paging import limit_of, page
from destination.sandbox.spec import ApiError, found

blueprint = Blueprint("sandbox_customers", __name__)


def create_customer(book: Ledger, fields: dict) -> Customer:
    """A new customer; 409 when an alias or external_id already names another one.

    external_id is Metronome's older alias field: it matches events as an alias does."""
    aliases = list(dict.fromkeys(fields.get("ingest_aliases", [])))
    customer_id = fields.get("id") or new_id()  # a fixed id only from a seed file
    external_id = fields.get("external_id") or customer_id
    _check_free(book, aliases + ([external_id] if "external_id" in fields else []), None)
    now = iso(book.now_ms())
    customer = Customer(customer_id, fields["name"], external_id, aliases, now, now)
    book.customers[customer.id] = customer
    for alias in _aliases(customer):
        book.by_alias[alias] = customer.id
    return customer


def _aliases(customer: Customer) -> list[str]:
    return customer.ingest_aliases + ([customer.external_id] if customer.external_id != customer.id else [])


def _check_free(book: Ledger, aliases: list[str], owner: str | None) -> None:
    for alias in aliases:
        holder = book.by_alias.get(alias)
        if holder is not None and holder != owner:
            raise ApiError(409, f"ingest alias {alias!r} already belongs to customer {holder}")


@blueprint.post("/v1/customers")
def create():
    fields = body("POST /v1/customers")
    fields.pop("id", None)  # ids are chosen here; only a seed file may fix one
    with ledger().lock:
        return ok({"data": create_customer(ledger(), fields).brief()})


@blueprint.get("/v1/customers")
def list_customers():
    book = ledger()
    limit = limit_of(request.args.get("limit"))
    alias = request.args.get("ingest_alias")
    wanted = set(request.args.getlist("customer_ids"))
    with book.lock:
        chosen = [c for c in book.customers.values()
                 if (alias is None or alias in _aliases(c)) and (not wanted or c.id in wanted)]
        items, following = page(chosen, limit, request.args.get("next_page"), [alias, sorted(wanted)])
        return ok({"data": [c.detail() for c in items], "next_page": following})


@blueprint.get("/v1/customers/<customer_id>")
def get_customer(customer_id: str):
    with ledger().lock:
        return ok({"data": found(ledger().customers, customer_id, "customer").detail()})


@blueprint.post("/v1/customers/<customer_id>/setIngestAliases")
def set_ingest_aliases(customer_id: str):
    fields = body("POST /v1/customers/{customer_id}/setIngestAliases")
    book = ledger()
    with book.lock:
        customer = found(book.customers, customer_id, "customer")
        aliases = list(dict.fromkeys(fields["ingest_aliases"]))
        _check_free(book, aliases, customer.id)
        for alias in _aliases(customer):
            book.by_alias.pop(alias, None)
        customer.ingest_aliases = aliases
        customer.updated_at = iso(book.now_ms())
        for alias in _aliases(customer):
            book.by_alias[alias] = customer.id
    return Response(status=200)  # the spec gives this answer no body
