"""A closed-loop HTTP load generator for the benches: processes x threads, each thread with one
keep-alive connection to 127.0.0.1, sending for a fixed time and recording every latency.

Every event gets a fresh random UUID messageId, as the SDKs make them, so no request is a
duplicate the server could skip cheaply, and the ids' hex holds what real ids hold (such as "e123",
which looks like the tail of a number). Bodies are made by splicing the ids into the event's
serialized bytes: building and serializing 100 dicts a request cost the load generator 6.9 us an
event (1.5 us spliced), on the same two cores as the server it measures.
"""
from __future__ import annotations

import base64
import http.client
import multiprocessing
import os
import statistics
import threading
import time
from pathlib import Path

import orjson

WRITE_KEY = "bench-write-key"
AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


def event(message_id: str, stamp: str) -> dict:
    """A ~1 KB Segment track event as analytics.js sends it: ten properties and the usual context."""
    return {"type": "track", "event": "llm_request", "messageId": message_id, "userId": "user_42",
            "anonymousId": "a6c1f1d2-93be-4c57-8d0b-2f6f1e5a9b10", "timestamp": stamp, "sentAt": stamp,
            "properties": {"model": "gpt-5", "input_tokens": 1500, "output_tokens": 320,
                           "cost": 0.0042, "region": "us-east-1", "cached": False,
                           "latency_ms": 812.5, "endpoint": "/v1/chat", "team": "platform",
                           "tags": ["a", "b"]},
            "context": {"library": {"name": "analytics.js", "version": "next-1.72.0"}, "ip": "203.0.113.7",
                        "locale": "en-US", "timezone": "Europe/Berlin", "groupId": "org_77",
                        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
                                     " Chrome/131.0.0.0 Safari/537.36",
                        "page": {"path": "/app/playground", "referrer": "https://www.example.com/pricing", "search": "",
                                 "title": "Playground - Example AI", "url": "https://app.example.com/app/playground"},
                        "campaign": {"name": "winter-launch", "source": "newsletter", "medium": "email"},
                        "traits": {"plan": "pro", "email": "someone@example.com"}},
            "integrations": {}}


class Bodies:
    """Request bodies of `event`: one event object, or an array of `n`, each with a fresh UUID."""

    _MARK = "00000000-0000-4000-8000-000000000000"

    def __init__(self, stamp: str):
        self.head, self.tail = orjson.dumps(event(self._MARK, stamp)).split(self._MARK.encode())

    def make(self, n: int) -> bytes:
        events = [self.head + message_id + self.tail for message_id in uuid4_texts(n)]
        return events[0] if n == 1 else b"[" + b",".join(events) + b"]"


def uuid4_texts(n: int) -> list[bytes]:
    """`n` random version-4 UUIDs as text, the form str(uuid.uuid4()) gives, from one urandom call."""
    digits = os.urandom(16 * n).hex()
    texts = []
    for at in range(0, 32 * n, 32):
        h = digits[at:at + 32]
        texts.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}".encode())
    return texts


def _sender(port, path, per_request, duration_s, results, lock):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": AUTH, "Content-Type": "application/json"}
    bodies = Bodies(time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 60)))
    latencies, statuses, sent = [], {}, 0
    deadline = time.perf_counter() + duration_s
    while time.perf_counter() < deadline:
        body = bodies.make(per_request)
        start = time.perf_counter()
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:  # counted, so the bench fails saying what happened
            statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
            break
        latencies.append(time.perf_counter() - start)
        statuses[response.status] = statuses.get(response.status, 0) + 1
        sent += per_request
    connection.close()
    with lock:
        results.append((latencies, statuses))


def _process(port, path, per_request, duration_s, threads, queue):
    results, lock = [], threading.Lock()
    workers = [threading.Thread(target=_sender, args=(port, path, per_request, duration_s, results, lock))
               for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put(results)


def run(port: int, path: str, per_request: int, duration_s: float, processes: int = 2, threads: int = 4) -> dict:
    """Send for `duration_s`; return events/s, requests/s, p50/p99 latency in ms and the statuses."""
    queue = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(
        target=_process, args=(port, path, per_request, duration_s, threads, queue)) for _ in range(processes)]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    collected = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - started
    latencies = sorted(l for results in collected for lats, _ in results for l in lats)
    statuses: dict = {}
    for results in collected:
        for _, counts in results:
            for status, n in counts.items():
                statuses[status] = statuses.get(status, 0) + n
    ok = statuses.get(200, 0)
    return {"requests_per_s": ok / elapsed, "events_per_s": ok * per_request / elapsed, "events": ok * per_request,
            "p50_ms": _percentile(latencies, 50) * 1000, "p99_ms": _percentile(latencies, 99) * 1000,
            "statuses": statuses}


def children(pid: int) -> list[int]:
    """A process's live child processes (a gunicorn master's workers), from /proc; [] elsewhere."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pid: int, with_children: bool = False) -> float | None:
    """A process's CPU time so far (user + system, all threads), from /proc; None elsewhere. With
    `with_children`, its live child processes' too: a gunicorn master and its workers."""
    try:
        pids = [pid] + (children(pid) if with_children else [])
        fields = [Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split() for p in pids]
    except OSError:
        return None
    return sum(int(f[11]) + int(f[12]) for f in fields) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float | None:
    """A process's peak resident set so far (VmHWM), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None


def median_of(runs: list[dict], key: str) -> float | None:
    """The median of a figure some runs may lack (None: /proc was not there), rounded; None if all lack it."""
    figures = [r[key] for r in runs if r[key] is not None]
    return round(statistics.median(figures), 1) if figures else None


def _percentile(sorted_values: list, pct: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * pct / 100))]


def medians(runs: list[dict]) -> dict:
    keys = ("requests_per_s", "events_per_s", "p50_ms", "p99_ms")
    return {key: round(statistics.median(r[key] for r in runs), 1) for key in keys}


def wait_listening(port: int, path: str = "/healthz", timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")
