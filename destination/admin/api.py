"""The admin API under /admin: bearer ADMIN_TOKENS (several, so tokens can be rotated), JSON in and out.

Mappings (whole document or one mapping at a time; every change is a new version), versions,
rollback and export; a preview that maps pasted or recently received events and sends nothing;
dead letters: list, filter, inspect, replay and delete; the delivery log; and the Delivery view's
series, queue state and event journeys, and the imports.
"""
from __future__ import annotations

import time

import orjson
from flask import Blueprint, Response, current_app, g, request

from destination.admin import delivery
from destination.admin.replay import replay
from destination.billing import catalog, verify
from destination.billing.client import MetronomeClient, MetronomeUnavailable
from destination.billing.judge import BillingCheck
from destination.billing.matcher import verdict
from destination.errors import BadRequest, ConfigError, InvalidMapping, NotFound, Unauthorized
from destination.intake.authenticate import bearer, match_secret
from destination.intake.pipeline import process_events
from destination.mapping.versions import compile_text, version_name
from destination.payload import exact
from destination.payload.timestamps import rfc3339_ms
from destination.payload.validate import WINDOW_MS

REFRESH_WAIT_S = 15  # the worker looks for a refresh request every second
blueprint = Blueprint("admin", __name__, url_prefix="/admin")
# Ids and times are 64-bit in both stores: a larger number is a 404 in a path and a 400 in a
# query or body, never a database error.
MAX_ID = 2**63 - 1
MAX_LIMIT = 1000
REPLAY_PAGE = 500


def _runtime():
    return current_app.extensions["destination"]


@blueprint.before_request
def require_admin_token():
    tokens = _runtime().settings.admin_tokens
    if not tokens:
        raise Unauthorized("the admin API is off until ADMIN_TOKENS is set", code="admin_disabled")
    label = match_secret(bearer(request.headers.get("Authorization")) or "", tokens)
    if label is None:
        raise Unauthorized("a valid admin token is required as 'Authorization: Bearer <token>'")
    g.admin = label


# -- mappings ----------------------------------------------------------------------------------------

@blueprint.get("/mappings")
def live_mappings():
    return _version_view(_live_version())


@blueprint.put("/mappings")
def save_mappings():
    """Replace the whole document: `{"document": {...} or "<json text>", "comment": "..."}`."""
    body = _body()
    base = body.get("base_version")
    if base is not None:
        base = _version_id(base, "'base_version' must be the id of the version the edit started from")
    return _save(_document_text(body.get("document")), body.get("comment", ""), based_on=base,
                 confirm_id_change=_confirmed(body))


@blueprint.post("/mappings/items")
def add_mapping():
    body = _body()
    document, live = _live_document()
    document["mappings"].append(_object(body.get("mapping"), "mapping"))
    return _save(exact.dumps_pretty(document), body.get("comment", ""), status=201, based_on=live)


@blueprint.put("/mappings/items/<name>")
def replace_mapping(name: str):
    body = _body()
    document, live = _live_document()
    document["mappings"][_index_of(document, name)] = _object(body.get("mapping"), "mapping")
    return _save(exact.dumps_pretty(document), body.get("comment", ""), based_on=live, confirm_id_change=_confirmed(body))


@blueprint.delete("/mappings/items/<name>")
def delete_mapping(name: str):
    document, live = _live_document()
    del document["mappings"][_index_of(document, name)]
    return _save(exact.dumps_pretty(document), request.args.get("comment", f"deleted {name}"), based_on=live)


@blueprint.get("/mappings/versions")
def versions():
    return {"versions": [{**v, "version": version_name(v["id"])} for v in _runtime().queue.list_mapping_versions(_limit())]}


@blueprint.get(f"/mappings/versions/<int(max={MAX_ID}):version>")
def one_version(version: int):
    return _version_view(_runtime().mappings.get(version))


@blueprint.get(f"/mappings/versions/<int(max={MAX_ID}):version>/export")
def export_version(version: int):
    """The document as a file for code review: commit it to destination/mappings/ to ship it."""
    found = _runtime().mappings.get(version)
    text = exact.dumps_pretty(exact.loads(found["document"].encode())) + "\n"
    return Response(text, 200, mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="mappings-{version_name(version)}.json"'})


@blueprint.post("/mappings/rollback")
def rollback():
    body = _body()
    version = _version_id(body.get("version"), "'version' must be the number of the version to roll back to")
    new = _runtime().mappings.rollback(version, g.admin, _comment(body.get("comment", "")), _confirmed(body))
    return {"version": version_name(new), "id": new, "rolled_back_to": version_name(version)}


# -- preview -----------------------------------------------------------------------------------------

@blueprint.post("/preview")
def preview():
    """Map events with a candidate document (or the live one) and return what would be sent, sending nothing.

    Body: `{"document"?: candidate, "event"?: {...} | "events"?: [...] | "recent"?: N}`. An invalid
    candidate is answered 200 with `valid: false` and its errors, so an editor can show them inline.
    """
    runtime = _runtime()
    body = _body()
    if body.get("document") is not None:
        try:
            mapping_set = compile_text(_document_text(body["document"]), "preview")
        except ConfigError as exc:
            return {"valid": False, "mapping_errors": str(exc).splitlines(), "events": []}
    else:
        mapping_set = runtime.mappings.current(fresh=True)  # a save a moment ago, in any process, is what it previews
    events, sources = _preview_events(body)
    now_ms = runtime.now_ms()
    out = []
    for event, source in zip(events, sources):
        processed = process_events([event], mapping_set, now_ms, runtime.limits, source,
                                   _preview_billing(runtime))
        [result] = processed.results
        out.append({"event": event, "source": source, "status": result["status"],
                    "usage_events": [orjson.loads(row.payload) for row in processed.rows],
                    "billing": result.get("billing", []), "errors": result.get("errors", [])})
    answer = {"valid": True, "mapping_version": mapping_set.version, "events": out}
    if "price" in body:
        answer["priced"] = _price(runtime, body["price"], [u for e in out for u in e["usage_events"]])
    return answer


def _price(runtime, price, usage_events: list[dict]) -> dict:
    """What these usage events would add to a customer's draft invoice, from Metronome's previewEvents.

    An admin's explicit request, so this web process calls Metronome here (the accept path never does)."""
    if not isinstance(price, dict) or not isinstance(price.get("customer_id"), str) or not price["customer_id"]:
        raise BadRequest("price needs a customer_id: the Metronome customer to price these events for", code="invalid_price")
    if not usage_events:
        return {"customer_id": price["customer_id"], "line_items": [], "message": "no usage event to price"}
    client = MetronomeClient(runtime.settings.metronome_base_url, runtime.settings.metronome_api_token,
                             timeout_s=runtime.settings.read_timeout_seconds, attempts=1)
    events = [{k: u[k] for k in ("event_type", "timestamp", "properties", "transaction_id") if k in u}
              for u in usage_events[:100]]
    try:
        # `replace`: the draft as if these were the period's only usage, i.e. exactly what they add
        invoices = client.preview_events(price["customer_id"], events, mode="replace")
    except MetronomeUnavailable as exc:
        return {"customer_id": price["customer_id"], "error": str(exc)}
    lines = [line for invoice in invoices for line in invoice.get("line_items", []) if line.get("quantity")]
    return {"customer_id": price["customer_id"], "line_items": lines}


@blueprint.get("/billing/catalog")
def billing_catalog():
    """What the billing check knows: the metrics read from Metronome, when, and the customers looked up."""
    return _catalog_view(_runtime())


@blueprint.post("/billing/refresh")
def billing_refresh():
    """Ask the worker to read Metronome's metrics now, and wait for it (web processes never call Metronome)."""
    runtime = _runtime()
    before = catalog.document(runtime.queue.get_state(catalog.KEY))["refreshed_ms"]
    runtime.queue.set_state(catalog.REQUEST_KEY, str(runtime.now_ms()))
    deadline = time.monotonic() + current_app.config.get("BILLING_REFRESH_WAIT_S", REFRESH_WAIT_S)
    while runtime.queue.get_state(catalog.REQUEST_KEY) is not None:  # the worker clears it when done
        if time.monotonic() > deadline:
            return {"refreshed": False, "message": "no worker took the refresh in time; is a worker running?",
                    **_catalog_view(runtime)}, 202
        time.sleep(0.05)
    if runtime.billing is not None:
        runtime.billing.cache.get(fresh=True)
    view = _catalog_view(runtime)
    return {"refreshed": view["refreshed_ms"] != before, **view}


@blueprint.get("/billing/problems")
def billing_problems():
    """Unbillable events per hour by reason and event_type, and the latest example of each, each
    judged again now: a problem the catalog no longer has (the metric was created) is `current: false`."""
    runtime = _runtime()
    hours = _whole_number(request.args.get("hours", "24"), "hours")
    if not 1 <= hours <= 168:
        raise BadRequest("hours must be a whole number from 1 to 168", code="invalid_hours")
    now = runtime.now_ms()
    first_hour = now - now % 3_600_000 - (hours - 1) * 3_600_000
    found = runtime.queue.billing_problems(first_hour)
    catalog_now = runtime.billing.cache.get(fresh=True) if runtime.billing is not None else None
    examples, current = [], {}
    for example in found["examples"]:
        event = exact.loads(example.pop("payload"))
        now_judged = verdict(event, catalog_now)
        still = any(p.code == example["reason"] for p in now_judged.problems)
        current[(example["reason"], example["event_type"])] = still
        examples.append({**example, "event": event, "current": still, "now": now_judged.as_json()})
    series: dict = {}
    for minute, reason, event_type, count in found["counts"]:
        per_hour = series.setdefault((reason, event_type), [0] * hours)
        per_hour[(minute - first_hour) // 3_600_000] += count
    return {"hour_starts_ms": [first_hour + h * 3_600_000 for h in range(hours)], "examples": examples,
            "series": [{"reason": reason, "event_type": event_type, "total": sum(per_hour), "per_hour": per_hour,
                        "current": current.get((reason, event_type), True)}
                       for (reason, event_type), per_hour in sorted(series.items(), key=lambda s: -sum(s[1]))]}


@blueprint.get("/billing/verification")
def billing_verification():
    """Delivered events checked with Metronome's events search: counts by result, and the latest checks."""
    return verify.stored_results(_runtime().queue)


def _catalog_view(runtime) -> dict:
    stored = catalog.document(runtime.queue.get_state(catalog.KEY))
    known = [cid for cid, (found, _) in stored["customers"].items() if found]
    return {"billing_check": runtime.settings.billing_check.lower(), "refreshed_ms": stored["refreshed_ms"],
            "age_s": None if stored["refreshed_ms"] is None else round((runtime.now_ms() - stored["refreshed_ms"]) / 1000, 3),
            "error": stored.get("error"),
            "metrics": [{"id": m["id"], "name": m["name"], "event_type_filter": m.get("event_type_filter"),
                         "aggregation_type": m.get("aggregation_type"), "aggregation_key": m.get("aggregation_key")}
                        for m in stored["metrics"]],
            "customers": {"known": sorted(known), "unknown": sorted(set(stored["customers"]) - set(known))}}


@blueprint.get("/recent-events")
def recent_events():
    rows = _runtime().queue.recent_events(_limit(default="20"))
    return {"events": [{"id": r["id"], "source": r["source"], "received_at_ms": r["received_at_ms"],
                        "event": exact.loads(r["raw"])} for r in rows]}


def _preview_events(body: dict) -> tuple[list, list]:
    if "recent" in body:
        count = body["recent"]
        if not isinstance(count, int) or not 1 <= count <= 100:
            raise BadRequest("'recent' must be a number of events from 1 to 100", code="invalid_recent")
        rows = _runtime().queue.recent_events(count)
        return [exact.loads(r["raw"]) for r in rows], [r["source"] for r in rows]
    if "event" in body:
        return [body["event"]], [body.get("source")]
    if isinstance(body.get("events"), list) and body["events"]:
        return body["events"], [body.get("source")] * len(body["events"])
    raise BadRequest("give 'event', a non-empty 'events' list, or 'recent': N", code="nothing_to_preview")


# -- dead letters ------------------------------------------------------------------------------------

@blueprint.get("/dead-letters")
def dead_letters():
    filters = _dead_letter_filters(request.args)
    rows = _runtime().queue.find_dead_letters(**filters, after_id=_int_arg("after_id", 0), limit=_limit())
    return {"dead_letters": [_letter_view(r) for r in rows], "count": len(rows), "filters": filters,
            "total": _runtime().queue.dead_letter_count()}


@blueprint.get(f"/dead-letters/<int(max={MAX_ID}):letter_id>")
def dead_letter(letter_id: int):
    return _letter_view(_letter(letter_id))


@blueprint.post(f"/dead-letters/<int(max={MAX_ID}):letter_id>/replay")
def replay_one(letter_id: int):
    runtime = _runtime()
    return replay(runtime.queue, runtime.mappings.current(fresh=True), [_letter(letter_id)], runtime.now_ms(),
                  runtime.limits, _fresh_billing(runtime))


@blueprint.post("/dead-letters/replay")
def replay_many():
    """Replay every dead letter matching the filters (`code`, `stage`, `since_ms`, `until_ms`), or `"all": true`."""
    runtime = _runtime()
    filters = _bulk_filters(_body())
    mapping_set = runtime.mappings.current(fresh=True)
    billing = _fresh_billing(runtime)
    totals = {"replayed": 0, "resolved": 0, "still_dead": 0, "usage_events_queued": 0}
    after = 0
    while page := runtime.queue.find_dead_letters(**filters, after_id=after, limit=REPLAY_PAGE):
        result = replay(runtime.queue, mapping_set, page, runtime.now_ms(), runtime.limits, billing)
        for key in totals:
            totals[key] += result[key]
        after = page[-1]["id"]
    return {**totals, "mapping_version": mapping_set.version}


@blueprint.delete(f"/dead-letters/<int(max={MAX_ID}):letter_id>")
def delete_one(letter_id: int):
    _letter(letter_id)
    return {"deleted": _runtime().queue.delete_dead_letters([letter_id])}


@blueprint.post("/dead-letters/delete")
def delete_many():
    filters = _bulk_filters(_body())
    deleted = 0
    while page := _runtime().queue.find_dead_letters(**filters, limit=REPLAY_PAGE):
        deleted += _runtime().queue.delete_dead_letters([r["id"] for r in page])
    return {"deleted": deleted}


# -- the delivery log ----------------------------------------------------------------------------------

@blueprint.get("/deliveries")
def deliveries():
    """Delivery attempts by transaction_id, messageId or customer: what was sent, when, and the answer."""
    filters = {name: _text(request.args.get(arg), arg) for name, arg in
               (("transaction_id", "transaction_id"), ("message_id", "messageId"), ("customer_id", "customer_id"))}
    rows = _runtime().queue.search_deliveries(**filters, limit=_limit())
    for row in rows:
        row["payload"] = orjson.loads(row["payload"])
    return {"deliveries": rows, "count": len(rows)}


# -- the Delivery view ---------------------------------------------------------------------------------

@blueprint.get("/delivery")
def delivery_over_time():
    """`?window=hour|day|week`: events received, accepted, filtered, refused, delivered, retried and
    dead-lettered per bucket, with totals and reasons, for the whole deployment."""
    window = request.args.get("window", "hour")
    if window not in delivery.WINDOWS:
        raise BadRequest("window must be hour, day or week", code="invalid_window")
    runtime = _runtime()
    return delivery.over_time(runtime.queue, runtime.now_ms(), window)


@blueprint.get("/delivery/queue")
def delivery_queue():
    """The queue now: depth, oldest pending age, dead letters, halt, pause, and events claimed by workers."""
    runtime = _runtime()
    return delivery.queue_now(runtime.queue, runtime.now_ms())


@blueprint.get("/delivery/journey")
def delivery_journey():
    """One event's fate by `messageId`, `transaction_id` or `customer_id` (exactly one)."""
    given = [(key, _text(request.args.get(key), key)) for key in delivery.SEARCH_KEYS]
    given = [(key, value) for key, value in given if value is not None]
    if len(given) != 1:
        raise BadRequest("give exactly one of messageId, transaction_id or customer_id", code="invalid_search")
    return delivery.journey(_runtime().queue, *given[0], limit=_limit())


@blueprint.get("/imports")
def imports():
    """Past and interrupted `metronome-destination import` runs: file, who, when, how far, counts."""
    rows = _runtime().queue.list_imports(_limit(default="50"))
    for row in rows:
        row["counts"] = orjson.loads(row["counts"])
    return {"imports": rows}


# -- helpers -------------------------------------------------------------------------------------------

def _body() -> dict:
    try:
        body = exact.loads(request.get_data()) if request.get_data() else {}
    except ValueError:
        raise BadRequest("the body is not valid JSON", code="malformed_json") from None
    return _object(body, "the body")


def _object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object", code="invalid_body")
    return value


def _document_text(document) -> str:
    if isinstance(document, str):
        return document
    return exact.dumps_pretty(_object(document, "'document'"))


def _live_version() -> dict:
    return _runtime().mappings.get(_runtime().queue.latest_mapping_version() or 0)


def _live_document() -> tuple[dict, int]:
    """The live document and its version id; an item edit saves only if that is still live."""
    found = _live_version()
    return exact.loads(found["document"].encode()), found["id"]


def _version_id(value, message: str) -> int:
    """A version as `GET /admin/mappings` gives it: the name ("v3") or the numeric id (3)."""
    if isinstance(value, str) and value[:1] == "v" and value[1:].isascii() and value[1:].isdigit():
        value = int(value[1:])
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ID:
        raise BadRequest(f"{message}: its name (\"v3\") or its id (3)", code="invalid_version")
    return value


def _index_of(document: dict, name: str) -> int:
    for index, mapping in enumerate(document.get("mappings", [])):
        if isinstance(mapping, dict) and mapping.get("name") == name:
            return index
    raise NotFound(f"no mapping is named {name!r}", code="no_such_mapping")


def _confirmed(body: dict) -> bool:
    confirm = body.get("confirm_id_change", False)
    if not isinstance(confirm, bool):
        raise BadRequest("'confirm_id_change' must be true or false", code="invalid_confirm_id_change")
    return confirm


def _comment(comment) -> str:
    if not isinstance(comment, str):
        raise BadRequest("'comment' must be text", code="invalid_comment")
    return comment


def _save(text: str, comment, status: int = 200, based_on: int | None = None, confirm_id_change: bool = False):
    comment = _comment(comment)
    try:
        version = _runtime().mappings.save(text, g.admin, comment, based_on, confirm_id_change)
    except ConfigError as exc:
        raise InvalidMapping(str(exc).splitlines()) from None
    return _version_view(_runtime().mappings.get(version)), status


def _version_view(row: dict) -> dict:
    return {"version": version_name(row["id"]), "id": row["id"], "author": row["author"], "comment": row["comment"],
            "created_at_ms": row["created_at_ms"], "document": exact.loads(row["document"].encode()),
            "text": row["document"]}


def _letter(letter_id: int) -> dict:
    found = _runtime().queue.get_dead_letter(letter_id)
    if found is None:
        raise NotFound(f"dead letter {letter_id} does not exist", code="no_such_dead_letter")
    return found


def _letter_view(row: dict) -> dict:
    view = {k: v for k, v in row.items() if k not in ("raw", "payload")}
    view["event"] = exact.loads(row["raw"])
    view["payload"] = orjson.loads(row["payload"]) if row.get("payload") else None
    if view["payload"] and row.get("stage") == "billing":  # held: it ages towards Metronome's window all the same
        view["window_ends_ms"] = rfc3339_ms(view["payload"]["timestamp"])[0] + WINDOW_MS
    return view


def _dead_letter_filters(source) -> dict:
    filters = {name: _text(source.get(name), name) for name in ("code", "stage")}
    for name in ("since_ms", "until_ms"):
        value = source.get(name)
        filters[name] = _whole_number(value, name) if value not in (None, "") else None
    return filters


def _text(value, name: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise BadRequest(f"{name} must be text", code=f"invalid_{name}")
    return value


def _bulk_filters(body: dict) -> dict:
    filters = _dead_letter_filters(body)
    if not any(v is not None for v in filters.values()) and body.get("all") is not True:
        raise BadRequest("give at least one filter (code, stage, since_ms, until_ms) or \"all\": true", code="no_filter")
    return filters


def _whole_number(value, name: str) -> int:
    text = str(value)
    # isascii: str.isdigit also says yes to "²", which int() then refuses
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ID:
        raise BadRequest(f"{name} must be a whole number from 0 to 2^63-1", code=f"invalid_{name}")
    return int(text)


def _int_arg(name: str, default: int) -> int:
    value = request.args.get(name)
    return default if value in (None, "") else _whole_number(value, name)


def _limit(default: str = "100") -> int:
    limit = _whole_number(request.args.get("limit", default), "limit")
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}", code="invalid_limit")
    return limit


def _preview_billing(runtime):
    """The preview judges what each usage event bills, but never sets one aside: nothing is stored."""
    if runtime.billing is None:
        return None
    return BillingCheck("warn", runtime.billing.cache, detail=True)


def _fresh_billing(runtime):
    """A replay judges against the catalog as stored now, not this process's copy of up to a second ago."""
    if runtime.billing is not None:
        runtime.billing.cache.get(fresh=True)
    return runtime.billing
