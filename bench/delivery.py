"""Delivery: one worker draining 200,000 queued events to a loopback Metronome-compatible sink.

Usage: python bench/delivery.py [--events 200000] [--runs 3] [--backends sqlite,postgres] [--latency-ms 50]
Each run queues the events, starts one worker process (`metronome-destination worker`, as the
Procfile runs it) and times it from start to an empty queue; SQLite runs again with the delivery log
off (DELIVERY_LOG_DAYS=0), to show what the log costs. With a latency, the sink holds
each answer that long, as Metronome's round trip over the internet would; the worker's sends
in flight (SENDS_IN_FLIGHT, 1 and the default 4) are then what sets its speed. Prints a table
and a JSON line of medians: events/s, HTTP requests, events per request, and the worker's CPU
time per event (from /proc; it moves less than events/s when the machine's speed drifts).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import loadgen  # noqa: E402
import sink  # noqa: E402
from accept_path import postgres_schema  # noqa: E402

from destination.queue.outbox import QueuedEvent  # noqa: E402
from destination.queue.postgres import PostgresQueue  # noqa: E402
from destination.queue.sqlite import SQLiteQueue  # noqa: E402


def usage_event(i: int, stamp: str) -> QueuedEvent:
    """A queued row as the accept path stores it: the usage event, and the raw CDP event it came
    from (the load generator's 1,037-byte event). The transaction_id is the event's messageId, a
    random UUID as SDKs make them: the delivery log indexes it, and random keys land all over that
    index. Sequential ids had flattered the worker: 35 against 56 us of CPU an event, before the
    log's lookups were indexed per block of log ids."""
    transaction_id = str(uuid.uuid4())
    event = {"transaction_id": transaction_id, "customer_id": f"user_{i % 500}", "event_type": "llm_request",
             "timestamp": stamp, "properties": {"model": "gpt-5", "input_tokens": str(1500 + i), "output_tokens": "320",
                                                "cost": "0.0042", "region": "us-east-1", "cached": "false"}}
    raw = orjson.dumps(loadgen.event(transaction_id, stamp))
    return QueuedEvent(transaction_id, orjson.dumps(event), raw, "v1", int(time.time() * 1000) - 60_000,
                       transaction_id, event["customer_id"], "bench")


def fill(queue, count: int) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 60))
    now_ms = int(time.time() * 1000)
    for start in range(0, count, 5000):
        queue.enqueue([usage_event(i, stamp) for i in range(start, min(count, start + 5000))], [], now_ms)


def drain(env: dict, queue, sink_url: str, count: int) -> dict:
    worker = subprocess.Popen([sys.executable, "-m", "destination", "worker"], cwd=ROOT,
                              env={**os.environ, "SENDS_IN_FLIGHT": "4", **env, "METRONOME_BASE_URL": sink_url,
                                   "METRONOME_API_TOKEN": sink.TOKEN, "LOG_LEVEL": "WARNING", "POLL_INTERVAL_SECONDS": "0.05"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.perf_counter()
    # Ask the sink first: counting the queue scans its table. On Postgres, a count every 50 ms
    # was half of what the database server did while the worker drained 400,000 events (perf:
    # Postgres was 71% of the box's CPU, 39% without them), and the rate was 19,200 against 26,500.
    while _sink_stats(sink_url)["events"] < count:
        time.sleep(0.05)
    while queue.depth():  # then the acks: drained means delivered and gone from the queue
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    cpu_s = loadgen.cpu_seconds(worker.pid)  # with start-up (~0.3 s): a little high for small runs
    worker.terminate()
    worker.wait(30)
    stats = _sink_stats(sink_url)
    if stats["events"] != count or stats["duplicates"]:
        raise SystemExit(f"the sink saw {stats}, expected {count} distinct events and no duplicates")
    return {"events_per_s": count / elapsed, "requests": stats["requests"], "seconds": elapsed,
            "cpu_us_per_event": cpu_s / count * 1e6 if cpu_s is not None else None}


def _sink_stats(sink_url: str) -> dict:
    return requests.get(sink_url + "/stats", timeout=5).json()


def one_run(backend: str, count: int, tmp: str, latency_ms: float = 0, in_flight: int = 4, env: dict | None = None) -> dict:
    process, url = sink.start(latency_ms=latency_ms)
    sends = {"SENDS_IN_FLIGHT": str(in_flight), **(env or {})}
    try:
        if backend == "sqlite":
            path = f"{tmp}/delivery-{time.monotonic_ns()}.sqlite3"
            queue = SQLiteQueue(path)
            fill(queue, count)
            return drain({"SQLITE_PATH": path, "DATABASE_URL": "", **sends}, queue, url, count)
        with postgres_schema() as database_url:
            queue = PostgresQueue(database_url)
            try:
                fill(queue, count)
                return drain({"DATABASE_URL": database_url, **sends}, queue, url, count)
            finally:
                queue.close()
    finally:
        process.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--latency-ms", type=float, default=50, help="the emulated Metronome round trip; 0 skips it")
    parser.add_argument("--latency-events", type=int, default=20_000)
    args = parser.parse_args()
    # (case name, backend, events, sink latency, sends in flight, settings): loopback first, the
    # issue's figure, and SQLite again without the delivery log (DELIVERY_LOG_DAYS=0), to show
    # what the log costs; then a Metronome-like round trip with one send at a time and with the
    # default four.
    cases = [(backend, backend, args.events, 0, 4, {}) for backend in args.backends.split(",")]
    if "sqlite" in args.backends.split(","):
        cases.append(("sqlite_without_log", "sqlite", args.events, 0, 4, {"DELIVERY_LOG_DAYS": "0"}))
    if args.latency_ms:
        cases += [(f"sqlite_{args.latency_ms:g}ms_{n}_in_flight", "sqlite", args.latency_events, args.latency_ms, n, {})
                  for n in (1, 4)]
    summary = {"benchmark": "delivery", "events": args.events, "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        for name, backend, count, latency_ms, in_flight, env in cases:
            runs = [one_run(backend, count, tmp, latency_ms, in_flight, env) for _ in range(args.runs)]
            requests_sent = statistics.median(r["requests"] for r in runs)
            summary[name] = {"events": count, "events_per_s": round(statistics.median(r["events_per_s"] for r in runs)),
                             "requests": round(requests_sent), "events_per_request": round(count / requests_sent, 1),
                             "worker_cpu_us_per_event": loadgen.median_of(runs, "cpu_us_per_event")}
    print(f"{'case':28} {'events':>8} {'events/s':>10} {'requests':>9} {'events/request':>15} {'worker CPU us/event':>20}")
    for name, *_ in cases:
        figures = summary[name]
        print(f"{name:28} {figures['events']:>8} {figures['events_per_s']:>10} {figures['requests']:>9} "
              f"{figures['events_per_request']:>15} {figures['worker_cpu_us_per_event'] or '-':>20}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
