"""A closed-loop HTTP load generator for the benches: processes x threads, each thread with one
keep-alive connection to 127.0.0.1, sending for a fixed time and recording every latency.

Bodies are built in the sending process with random UUID messageIds, as the SDKs make them, so
no request is a duplicate the server could skip cheaply, and the ids' hex holds what real ids hold
(such as "e123", which looks like the tail of a number).
"""
from __future__ import annotations

import base64
import http.client
import multiprocessing
import statistics
import threading
import time
import uuid

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


def _sender(port, path, per_request, duration_s, results, lock):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": AUTH, "Content-Type": "application/json"}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 60))
    latencies, statuses, sent = [], {}, 0
    deadline = time.perf_counter() + duration_s
    while time.perf_counter() < deadline:
        batch = [event(str(uuid.uuid4()), stamp) for _ in range(per_request)]
        body = orjson.dumps(batch if per_request > 1 else batch[0])
        start = time.perf_counter()
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
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
    return {"requests_per_s": ok / elapsed, "events_per_s": ok * per_request / elapsed,
            "p50_ms": _percentile(latencies, 50) * 1000, "p99_ms": _percentile(latencies, 99) * 1000,
            "statuses": statuses}


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
