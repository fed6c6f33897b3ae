"""Reading back what the account billed: usage, usage groups, events search, draft invoices, previews."""
from __future__ import annotations

from flask import Blueprint, request

from destination.sandbox import invoices, usage
from destination.sandbox.http import body, flag, ledger, ok
from destination.sandbox.ledger import Ledger, Record, iso
from destination.sandbox.paging import limit_of, page
from destination.sandbox.spec import found

blueprint = Blueprint("sandbox_reads", __name__)
USAGE_PAGE = 100  # /v1/usage takes no limit; rows per page
SEARCH_WINDOW_MS = 34 * 86_400_000  # events search sees the last 34 days, as Metronome's does


@blueprint.post("/v1/usage")
def usage_batch():
    return _paged("POST /v1/usage", usage.usage, USAGE_PAGE)


@blueprint.post("/v1/usage/groups")
def usage_groups():
    return _paged("POST /v1/usage/groups", usage.usage_groups, limit_of(request.args.get("limit")))


def _paged(operation: str, rows_of, limit: int):
    fields = body(operation)
    with ledger().lock:
        rows = rows_of(ledger(), fields)
    items, following = page(rows, limit, request.args.get("next_page"), fields)
    return ok({"data": items, "next_page": following})


@blueprint.post("/v1/events/search")
def events_search():
    """Each event with these ids, repeats included: what it matched, as Metronome's Events page shows."""
    fields = body("POST /v1/events/search")
    book = ledger()
    with book.lock:
        since = book.now_ms() - SEARCH_WINDOW_MS
        records = [record for tid in dict.fromkeys(fields["transactionIds"]) for record in book.records.get(tid, [])]
        return ok([_searched(book, r) for r in records if iso(since) <= r.processed_at])


def _searched(book: Ledger, record: Record) -> dict:
    event = record.event
    out = {"id": record.id, "transaction_id": event["transaction_id"], "customer_id": event["customer_id"],
           "event_type": event["event_type"], "timestamp": event["timestamp"],
           "properties": event.get("properties") or {}, "is_duplicate": record.is_duplicate,
           "processed_at": record.processed_at,
           "matched_billable_metrics": [book.metrics[m].as_json() for m in record.metric_ids]}
    customer = book.customer_for(event["customer_id"])
    if customer is not None:
        out["matched_customer"] = {"id": customer.id, "name": customer.name}
    return out


@blueprint.get("/v1/customers/<customer_id>/invoices")
def list_invoices(customer_id: str):
    """Only drafts exist in the sandbox: no period ever closes, so FINALIZED and VOID are empty."""
    limit = limit_of(request.args.get("limit"))
    status = request.args.get("status", "DRAFT").upper()
    skip_zero = flag("skip_zero_qty_line_items")
    with ledger().lock:
        customer = found(ledger().customers, customer_id, "customer")
        drafts = invoices.drafts(ledger(), customer, skip_zero=skip_zero) if status == "DRAFT" else []
    items, following = page(drafts, limit, request.args.get("next_page"), [customer_id, status])
    return ok({"data": items, "next_page": following})


@blueprint.post("/v1/customers/<customer_id>/previewEvents")
def preview_events(customer_id: str):
    fields = body("POST /v1/customers/{customer_id}/previewEvents")
    with ledger().lock:
        customer = found(ledger().customers, customer_id, "customer")
        drafts = invoices.drafts(ledger(), customer, fields["events"], fields.get("mode", "replace"),
                                 fields.get("skip_zero_qty_line_items", False))
    return ok({"data": drafts})
