"""A lean Metronome-compatible /v1/ingest sink for the benches, in a process of its own.

It checks the token, gunzips, parses the batch, checks 1..100 events each with a transaction_id,
counts distinct transaction_ids and requests, and answers 200, or 503 while `down` is set (the
memory bench's Metronome outage). `latency_ms` holds each answer that long, as a round trip to
Metronome over the internet would. GET /stats gives the counts.
"""
from __future__ import annotations

import gzip
import multiprocessing
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

TOKEN = "bench-token"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        state = self.server.state
        self._reply(200, orjson.dumps({"requests": state["requests"], "events": len(state["ids"]),
                                       "duplicates": state["duplicates"]}))

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        state = self.server.state
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._reply(401, b'{"message":"Unauthorized"}')
        if state["down"]:
            return self._reply(503, b'{"message":"down for the bench"}')
        if self.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        batch = orjson.loads(raw)
        if not isinstance(batch, list) or not 1 <= len(batch) <= 100 or not all("transaction_id" in e for e in batch):
            return self._reply(400, b'{"message":"bad batch"}')
        state["requests"] += 1
        for event in batch:
            if event["transaction_id"] in state["ids"]:
                state["duplicates"] += 1
            state["ids"].add(event["transaction_id"])
        if state["latency_s"]:
            time.sleep(state["latency_s"])  # the emulated round trip, one per request, in its own thread
        self._reply(200)


def _serve(port_out, down: bool, latency_ms: float) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.state = {"requests": 0, "ids": set(), "duplicates": 0, "down": down, "latency_s": latency_ms / 1000}
    port_out.put(server.server_address[1])
    server.serve_forever()


def start(down: bool = False, latency_ms: float = 0) -> tuple[multiprocessing.Process, str]:
    """Start the sink in its own process; return it and its base URL."""
    context = multiprocessing.get_context("fork")
    port_out = context.Queue()
    process = context.Process(target=_serve, args=(port_out, down, latency_ms), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{port_out.get(timeout=10)}"
