"""A lean Metronome-compatible /v1/ingest sink for the benches, in a process of its own.

It checks the token, gunzips, parses the batch, checks 1..100 events each with a transaction_id,
counts distinct transaction_ids and requests, and answers 200, or 503 while `down` is set (the
memory bench's Metronome outage). `latency_ms` holds each answer that long, as a round trip to
Metronome over the internet would, plus `latency_per_request_ms` for each request already in
flight at the sink (a destination that slows under load). `rate_per_s` admits that many requests
a second (a token bucket holding a fifth of a second's worth) and answers 429 beyond it, with
Retry-After and retry-after-ms. GET /stats gives the counts; GET /timeline each request's
arrival time, status and the requests in flight when it arrived.
"""
from __future__ import annotations

import gzip
import multiprocessing
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from destination.sandbox.ingest import take_token, throttled_headers  # noqa: E402

TOKEN = "bench-token"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        state = self.server.state
        if self.path == "/timeline":
            return self._reply(200, orjson.dumps(state["timeline"]))
        self._reply(200, orjson.dumps({"requests": state["requests"], "events": len(state["ids"]),
                                       "duplicates": state["duplicates"], "refused": state["refused"]}))

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        state = self.server.state
        with state["lock"]:
            arrived, in_flight = time.time(), state["in_flight"]
            state["in_flight"] += 1
        try:
            status, headers = self._ingest(raw, state, arrived)
            # The emulated round trip, in this request's own thread: longer with more in flight.
            delay = state["latency_s"] + state["latency_per_request_s"] * in_flight
            if delay and status != 429:
                time.sleep(delay)
        finally:
            with state["lock"]:
                state["in_flight"] -= 1
                state["timeline"].append((arrived, status, in_flight + 1))
        self._reply(status, b'{"message":"rate limited"}' if status == 429 else b"", headers)

    def _ingest(self, raw: bytes, state: dict, now: float) -> tuple[int, dict]:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {}
        if state["down"]:
            return 503, {}
        if state["bucket"]:
            with state["lock"]:  # the sandbox's token bucket: the same limit users rehearse against
                wait_s = take_token(state["bucket"], now)
            if wait_s:
                state["refused"] += 1
                return 429, throttled_headers(wait_s)
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        batch = orjson.loads(raw)
        if not isinstance(batch, list) or not 1 <= len(batch) <= 100 or not all("transaction_id" in e for e in batch):
            return 400, {}
        with state["lock"]:
            state["requests"] += 1
            for event in batch:
                if event["transaction_id"] in state["ids"]:
                    state["duplicates"] += 1
                state["ids"].add(event["transaction_id"])
        return 200, {}


def _serve(port_out, down: bool, latency_ms: float, latency_per_request_ms: float, rate_per_s: float) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.state = {"requests": 0, "ids": set(), "duplicates": 0, "down": down, "latency_s": latency_ms / 1000,
                    "latency_per_request_s": latency_per_request_ms / 1000, "refused": 0,
                    "bucket": rate_per_s and {"per_s": rate_per_s, "burst": rate_per_s / 5, "tokens": rate_per_s / 5,
                                              "at": time.time()}, "in_flight": 0, "timeline": [],
                    "lock": threading.Lock()}
    port_out.put(server.server_address[1])
    server.serve_forever()


def start(down: bool = False, latency_ms: float = 0, latency_per_request_ms: float = 0,
          rate_per_s: float = 0) -> tuple[multiprocessing.Process, str]:
    """Start the sink in its own process; return it and its base URL."""
    context = multiprocessing.get_context("fork")
    port_out = context.Queue()
    process = context.Process(target=_serve, args=(port_out, down, latency_ms, latency_per_request_ms, rate_per_s),
                              daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{port_out.get(timeout=10)}"
