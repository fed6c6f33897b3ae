"""Billable metrics: create, list, read, archive, and a customer's metrics."""
from __future__ import annotations

from flask import Blueprint, request

from destination.sandbox import matching
from destination.sandbox.http import body, created, flag, ledger, ok
from destination.sandbox.ledger import Ledger, Metric, iso, new_id
from destination.sandbox.paging import limit_of, page
from destination.sandbox.spec import ApiError, found

blueprint = Blueprint("sandbox_billable_metrics", __name__)


def create_metric(book: Ledger, fields: dict) -> Metric:
    """A new metric; 400 for a SQL metric or a key that is not a required property filter."""
    problem = matching.metric_problem(fields)
    if problem:
        raise ApiError(400, problem)
    metric = Metric(fields.get("id") or new_id(), fields["name"], fields["aggregation_type"],
                    fields.get("aggregation_key"), fields.get("event_type_filter"),
                    fields.get("property_filters", []), fields.get("group_keys", []))
    book.metrics[metric.id] = metric
    return metric


@blueprint.post("/v1/billable-metrics/create")
def create():
    return created("POST /v1/billable-metrics/create", create_metric)


def _listing(metrics: list[Metric]):
    archived = flag("include_archived")
    chosen = [m for m in metrics if archived or m.archived_at is None]
    items, following = page(chosen, limit_of(request.args.get("limit")), request.args.get("next_page"), archived)
    return ok({"data": [m.as_json() for m in items], "next_page": following})


@blueprint.get("/v1/billable-metrics")
def list_metrics():
    with ledger().lock:
        return _listing(list(ledger().metrics.values()))


@blueprint.get("/v1/customers/<customer_id>/billable-metrics")
def customer_metrics(customer_id: str):
    """Every metric can bill every customer in the sandbox, so this is the account's list."""
    with ledger().lock:
        found(ledger().customers, customer_id, "customer")
        return _listing(list(ledger().metrics.values()))


@blueprint.get("/v1/billable-metrics/<billable_metric_id>")  # the spec's parameter names
def get_metric(billable_metric_id: str):
    with ledger().lock:
        return ok({"data": found(ledger().metrics, billable_metric_id, "billable metric").as_json()})


@blueprint.post("/v1/billable-metrics/archive")
def archive():
    fields = body("POST /v1/billable-metrics/archive")
    with ledger().lock:
        metric = found(ledger().metrics, fields["id"], "billable metric")
        metric.archived_at = metric.archived_at or iso(ledger().now_ms())
        return ok({"data": {"id": metric.id}})
