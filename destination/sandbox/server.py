"""A local Metronome: `/v1/ingest` with the real contract, plus read-back and faults on cue.

Contract kept: bearer auth (401/403), a JSON array of 1..100 events, Metronome's field rules,
one bad event rejects the whole batch with 400 `{"message"}`, dedup on transaction_id, and 200
with an empty body. Read-back: `GET /sandbox/events`, `/sandbox/totals`, `/sandbox/requests`.
Faults, for tests: `POST /sandbox/faults` scripts the next answers, rejects chosen transaction_ids,
or swaps the accepted tokens. State lives in memory; it is a development tool, not a store.
"""
from __future__ import annotations

import gzip
import re
import threading
import time
from collections import deque
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

import orjson
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from destination.payload import exact

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
FUTURE_LIMIT_S = 24 * 3600


class SandboxState:
    def __init__(self, tokens, clock=time.time):
        self.lock = threading.Lock()
        self.tokens = set(tokens)
        self.clock = clock
        self.reset()

    def reset(self):
        self.events: dict[str, dict] = {}  # transaction_id -> first event accepted
        self.duplicates = 0
        self.requests: list[dict] = []
        self.script: deque = deque()  # scripted answers, consumed one per request
        self.reject_ids: set[str] = set()
        self.hang_s = 0.0  # accept, then hold the answer this long (crash-between-claim-and-ack tests)
        self.hung = threading.Event()
        self.release = threading.Event()


def _problem(event, now_s) -> str | None:

    if not isinstance(event, dict):
        return "each event must be an object"
    for name in ("transaction_id", "customer_id", "event_type", "timestamp"):
        value = event.get(name)
        if not isinstance(value, str) or not value:
            return f"{name} is required and must be a non-empty string"
    if len(event["transaction_id"]) > 128:
        return "transaction_id must be at most 128 characters"
    if not RFC3339.match(event["timestamp"]):
        return f"timestamp {event['timestamp']!r} is not RFC 3339"
    moment = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    if moment.timestamp() > now_s + FUTURE_LIMIT_S:
        return "timestamp is more than 24 hours in the future"
    if "properties" in event and not isinstance(event["properties"], dict):
        return "properties must be an object"
    return None


def create_sandbox(tokens=("sandbox-token",), clock=time.time) -> Flask:
    app = Flask("metronome-sandbox")
    state = SandboxState(tokens, clock)
    app.extensions["sandbox"] = state

    @app.post("/v1/ingest")
    def ingest():
        raw = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        with state.lock:
            entry = {"at": state.clock(), "status": None, "transaction_ids": []}
            state.requests.append(entry)
            answer = _answer(state, raw, entry)
        if state.hang_s and entry["status"] == 200:
            state.hung.set()
            state.release.wait(state.hang_s)  # the client is meant to die while waiting here
        return answer

    @app.get("/sandbox/events")
    def events():
        with state.lock:
            return jsonify({"events": list(state.events.values()), "duplicates": state.duplicates})

    @app.get("/sandbox/totals")
    def totals():
        with state.lock:
            return jsonify(_totals(state.events.values()))

    @app.get("/sandbox/requests")
    def requests_log():
        with state.lock:
            return jsonify(state.requests)

    @app.post("/sandbox/faults")
    def faults():
        spec = request.get_json(force=True)
        with state.lock:
            state.script.extend(spec.get("script", []))
            state.reject_ids.update(spec.get("reject_transaction_ids", []))
            if "tokens" in spec:
                state.tokens = set(spec["tokens"])
            if "hang_s" in spec:
                state.hang_s = float(spec["hang_s"])
                if state.hang_s:
                    state.release.clear()
                else:
                    state.release.set()
        return jsonify({"ok": True})

    @app.post("/sandbox/reset")
    def reset():
        with state.lock:
            state.reset()
        return jsonify({"ok": True})

    return app


def _answer(state: SandboxState, raw: bytes, entry: dict) -> Response:
    def reply(status, message=None, headers=None):
        entry["status"] = status
        body = orjson.dumps({"message": message}) if message is not None else b""
        return Response(body, status, headers or {}, content_type="application/json" if body else None)

    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or auth[7:] not in state.tokens:
        return reply(403 if auth.startswith("Bearer ") else 401, "Unauthorized")
    if state.script:
        cue = state.script.popleft()
        if cue.get("status", 200) != 200:
            return reply(cue["status"], cue.get("message", "scripted failure"), cue.get("headers"))
    try:
        batch = exact.loads(raw)
    except ValueError:
        return reply(400, "request body is not valid JSON")
    if not isinstance(batch, list):
        return reply(400, "[expected array]")
    if not 1 <= len(batch) <= 100:
        return reply(400, f"[array is too {'short' if not batch else 'long'}: must have between 1 and 100 elements but instance has {len(batch)} elements]")
    now_s = state.clock()
    for i, event in enumerate(batch):
        problem = _problem(event, now_s)
        if problem is None and event["transaction_id"] in state.reject_ids:
            problem = f"customer_id {event['customer_id']!r} is not allowed for this event (sandbox rejection)"
        if problem:
            return reply(400, f"event {i}: {problem}")
    for event in batch:
        entry["transaction_ids"].append(event["transaction_id"])
        if event["transaction_id"] in state.events:
            state.duplicates += 1
        else:
            state.events[event["transaction_id"]] = event
    return reply(200)


def _totals(events) -> dict:
    """Per customer and event_type: the count, and the sum of every numeric property."""
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

    def __init__(self, host="127.0.0.1", port=0, tokens=("sandbox-token",), clock=time.time):
        self.app = create_sandbox(tokens, clock)
        self.server = make_server(host, port, self.app, threaded=True)
        self.url = f"http://{host}:{self.server.server_port}"
        # A short poll interval lets stop() return at once instead of after the default half second.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="sandbox", daemon=True)

    @property
    def state(self) -> SandboxState:
        return self.app.extensions["sandbox"]

    def start(self) -> "SandboxServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
