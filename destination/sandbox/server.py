"""A local Metronome: ingest, customers, billable metrics, usage, events search, pricing and drafts.

Every Metronome route takes a bearer token (401 without one, 403 with a wrong one) and answers
errors as `{"message"}`, as Metronome does. A path the sandbox does not emulate answers 404 with
a message that says so, so an emulator's limit is never mistaken for Metronome's answer.

Beside the API, for development and tests: `GET /sandbox/events`, `/sandbox/totals` and
`/sandbox/requests` read back what arrived; `POST /sandbox/faults` scripts the next ingest answers,
rejects chosen transaction_ids, swaps the accepted tokens or holds answers; `POST /sandbox/reset`
forgets everything. State lives in memory only.
"""
from __future__ import annotations

import gzip
import threading
import time
from decimal import Decimal, InvalidOperation

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

from destination.sandbox import billable_metrics, customers, ingest, pricing, reads
from destination.sandbox.http import authorize, ok
from destination.sandbox.ledger import Ledger
from destination.sandbox.spec import ApiError

DEFAULT_MAX_PROPERTY_BYTES = 256


def create_sandbox(tokens=("sandbox-token",), clock=time.time,
                   max_property_bytes: int = DEFAULT_MAX_PROPERTY_BYTES) -> Flask:
    app = Flask("metronome-sandbox")
    book = Ledger(tokens, clock, max_property_bytes)
    app.extensions["sandbox"] = book
    for module in (customers, billable_metrics, pricing, reads):
        app.register_blueprint(module.blueprint)

    @app.before_request
    def metronome_auth():
        if request.path.startswith("/v1/") and request.path != "/v1/ingest":
            authorize()
            if book.api_fault:  # a fault on cue for the read API: {"status": 429, "headers": {...}}
                answer = ok({"message": "scripted failure"}, book.api_fault["status"])
                answer.headers.update(book.api_fault.get("headers", {}))
                return answer

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return ok({"message": error.message}, error.status)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code in (404, 405):
            return ok({"message": f"{request.method} {request.path} is not implemented by the sandbox"}, error.code)
        return ok({"message": error.description}, error.code)

    @app.post("/v1/ingest")
    def ingest_events():
        raw = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        with book.lock:
            entry = {"at": book.clock(), "status": None, "transaction_ids": []}
            book.requests.append(entry)
            answer = ingest.answer(book, raw, entry)
        if book.latency_s:
            time.sleep(book.latency_s)
        if book.hang_s and entry["status"] == 200:
            book.hung.set()
            book.release.wait(book.hang_s)  # the client is meant to die while waiting here
        return answer

    _readback_routes(app, book)
    return app


def _readback_routes(app: Flask, book: Ledger) -> None:
    @app.get("/sandbox/events")
    def events():
        with book.lock:
            return jsonify({"events": list(book.events.values()), "duplicates": book.duplicates})

    @app.get("/sandbox/totals")
    def totals():
        with book.lock:
            return jsonify(_totals(book.events.values()))

    @app.get("/sandbox/requests")
    def requests_log():
        with book.lock:
            return jsonify(book.requests)

    @app.post("/sandbox/faults")
    def faults():
        spec = request.get_json(force=True)
        # Checked before anything is applied, so a bad fault changes nothing.
        limits = {"rate_limit": _rate_limit(spec["rate_limit"], book.clock())} if "rate_limit" in spec else {}
        if "latency_s" in spec:
            limits["latency_s"] = _number(spec["latency_s"], "latency_s", 0, 60)
        with book.lock:
            book.script.extend(spec.get("script", []))
            book.reject_ids.update(spec.get("reject_transaction_ids", []))
            if "tokens" in spec:
                book.tokens = set(spec["tokens"])
            if "api" in spec:  # every route but ingest answers this until cleared with {"api": null}
                book.api_fault = spec["api"]
            for name, value in limits.items():  # rate_limit {"per_s": 50, "burst": 10}: 429 beyond it; null lifts it
                setattr(book, name, value)
            if "hang_s" in spec:
                book.hang_s = float(spec["hang_s"])
                if book.hang_s:
                    book.release.clear()
                else:
                    book.release.set()
        return jsonify({"ok": True})

    @app.post("/sandbox/reset")
    def reset():
        with book.lock:
            book.reset()
        return jsonify({"ok": True})


def _number(value, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApiError(400, f"{name} must be a number from {low:g} to {high:g}")
    return float(value)


def _rate_limit(limit, now_s: float) -> dict | None:
    if limit is None:
        return None
    if not isinstance(limit, dict):
        raise ApiError(400, "rate_limit must be an object like {\"per_s\": 50, \"burst\": 10}, or null")
    per_s = _number(limit.get("per_s"), "rate_limit.per_s", 0.01, 100_000)
    burst = _number(limit.get("burst", 1), "rate_limit.burst", 1, 100_000)
    return {"per_s": per_s, "burst": burst, "tokens": burst, "at": now_s}


def _totals(events) -> dict:
    """Per customer_id as sent and event_type: the count, and the sum of every numeric property."""
    out: dict = {}
    for event in events:
        slot = out.setdefault(event["customer_id"], {}).setdefault(event["event_type"], {"count": 0, "sums": {}})
        slot["count"] += 1
        for key, value in (event.get("properties") or {}).items():
            try:
                number = Decimal(str(value))
            except InvalidOperation:
                continue
            slot["sums"][key] = str(Decimal(slot["sums"].get(key, "0")) + number)
    return out


class SandboxServer:
    """Serve the sandbox on a loopback port in a background thread."""

    def __init__(self, host="127.0.0.1", port=0, tokens=("sandbox-token",), clock=time.time,
                 max_property_bytes: int = DEFAULT_MAX_PROPERTY_BYTES):
        self.app = create_sandbox(tokens, clock, max_property_bytes)
        self.server = make_server(host, port, self.app, threaded=True)
        self.url = f"http://{host}:{self.server.server_port}"
        # A short poll interval lets stop() return at once instead of after the default half second.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="sandbox", daemon=True)

    @property
    def state(self) -> Ledger:
        return self.app.extensions["sandbox"]

    def start(self) -> "SandboxServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
