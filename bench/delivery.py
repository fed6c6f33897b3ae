"""Delivery: one worker draining queued events to a loopback Metronome-compatible sink.

Usage: python bench/delivery.py [--events 200000] [--runs 3] [--backends sqlite,postgres]
       [--latency-ms 50] [--latency-events 200000] [--memory-events 0]
Each run queues the events, starts one worker process (`metronome-destination worker`, as the
Procfile runs it) and times it from start to an empty queue. The cases:
- loopback, each backend, and SQLite again with the delivery log off (DELIVERY_LOG_DAYS=0);
- a Metronome-like round trip (the sink holds each answer 50 ms), each backend, with the
  adaptive window and with the old fixed four in flight (FIXED_SENDS_IN_FLIGHT=true);
- a sink that admits 50 requests a second and answers 429 beyond that (Retry-After and
  retry-after-ms), 50 ms round trip: how soon the worker settles near 50 a second, and the share
  refused after;
- a sink whose round trip grows with its load (20 ms + 5 ms per request already in flight);
- with --memory-events, that many queued (1,000,000 for the issue's figure), each backend, 50 ms.
Prints a table, the window over time as the sink saw it (requests in flight, most in each
second), and a JSON line of medians: events/s, requests, share refused, the worker's CPU time
per event (from /proc; it moves less than events/s when the machine's speed drifts) and its peak
RSS (VmHWM).
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
from dataclasses import dataclass, field
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
                              env={**os.environ, **env, "METRONOME_BASE_URL": sink_url,
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
    rss_mb = loadgen.peak_rss_mb(worker.pid)
    worker.terminate()
    worker.wait(30)
    stats = _sink_stats(sink_url)
    if stats["events"] != count or stats["duplicates"]:
        raise SystemExit(f"the sink saw {stats}, expected {count} distinct events and no duplicates")
    timeline = requests.get(sink_url + "/timeline", timeout=30).json()
    return {"events_per_s": count / elapsed, "requests": stats["requests"] + stats["refused"], "seconds": elapsed,
            "refused": stats["refused"], "cpu_us_per_event": cpu_s / count * 1e6 if cpu_s is not None else None,
            "rss_mb": rss_mb, **over_time(timeline)}


def over_time(timeline: list) -> dict:
    """Per second of the run: the most requests in flight at the sink (the window it saw),
    requests admitted, and refused; and for a rate-limited sink, when the admitted rate settled
    within 20% of the limit, and the share refused after that."""
    first = min(t for t, _, _ in timeline)
    seconds = int(max(t for t, _, _ in timeline) - first) + 1
    window, admitted, refused = [0] * seconds, [0] * seconds, [0] * seconds
    for at, status, in_flight in timeline:
        second = int(at - first)
        window[second] = max(window[second], in_flight)
        (refused if status == 429 else admitted)[second] += 1
    return {"window": window, "admitted": admitted, "refused_per_s": refused}


def settling(run: dict, limit: float) -> dict:
    """When every whole second from then on admitted within 20% of `limit`, and what share of
    requests were refused from then on. The last second is cut short by the run's end."""
    admitted, refused = run["admitted"][:-1], run["refused_per_s"][:-1]
    settled = next((i for i in range(len(admitted)) if all(abs(a - limit) <= 0.2 * limit for a in admitted[i:])), None)
    if settled is None:
        return {"settled_s": None, "refused_after": None}
    sent = sum(admitted[settled:]) + sum(refused[settled:])
    return {"settled_s": settled, "refused_after": sum(refused[settled:]) / sent if sent else 0.0}


def _sink_stats(sink_url: str) -> dict:
    return requests.get(sink_url + "/stats", timeout=5).json()


@dataclass
class Case:
    name: str
    backend: str
    events: int
    sink: dict = field(default_factory=dict)  # sink.start's options
    env: dict = field(default_factory=dict)
    rate_limit: float = 0


def one_run(case: Case, tmp: str) -> dict:
    process, url = sink.start(**case.sink)
    try:
        if case.backend == "sqlite":
            path = f"{tmp}/delivery-{time.monotonic_ns()}.sqlite3"
            queue = SQLiteQueue(path)
            fill(queue, case.events)
            run = drain({"SQLITE_PATH": path, "DATABASE_URL": "", **case.env}, queue, url, case.events)
        else:
            with postgres_schema() as database_url:
                queue = PostgresQueue(database_url)
                try:
                    fill(queue, case.events)
                    run = drain({"DATABASE_URL": database_url, **case.env}, queue, url, case.events)
                finally:
                    queue.close()
    finally:
        process.terminate()
    if case.rate_limit:
        run.update(settling(run, case.rate_limit))
    return run


def cases(args) -> list[Case]:
    backends = args.backends.split(",")
    fixed = {"SENDS_IN_FLIGHT": "4", "FIXED_SENDS_IN_FLIGHT": "true"}
    out = [Case(backend, backend, args.events) for backend in backends]
    if "sqlite" in backends:
        out.append(Case("sqlite_without_log", "sqlite", args.events, env={"DELIVERY_LOG_DAYS": "0"}))
    if args.latency_ms:
        rtt = {"latency_ms": args.latency_ms}
        for backend in backends:
            out.append(Case(f"{backend}_{args.latency_ms:g}ms", backend, args.latency_events, rtt))
            out.append(Case(f"{backend}_{args.latency_ms:g}ms_fixed_4", backend, args.latency_events // 4, rtt, fixed))
        out.append(Case(f"sqlite_{args.latency_ms:g}ms_sink_admits_50_a_s", "sqlite", 150_000,
                        {**rtt, "rate_per_s": 50}, rate_limit=50))
    out.append(Case("sqlite_rtt_20ms_plus_5ms_per_request", "sqlite", 100_000,
                    {"latency_ms": 20, "latency_per_request_ms": 5}))
    if args.memory_events:
        out += [Case(f"{backend}_{args.memory_events}_queued_50ms", backend, args.memory_events, {"latency_ms": 50})
                for backend in backends]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--latency-ms", type=float, default=50, help="the emulated Metronome round trip; 0 skips it")
    parser.add_argument("--latency-events", type=int, default=200_000)
    parser.add_argument("--memory-events", type=int, default=0, help="also drain this many queued events (each backend, 50 ms)")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = parser.parse_args()
    chosen = [case for case in cases(args) if args.only in case.name]
    summary = {"benchmark": "delivery", "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        for case in chosen:
            runs = [one_run(case, tmp) for _ in range(args.runs)]
            summary[case.name] = figures(case, runs)
    print(f"{'case':44} {'events':>8} {'events/s':>10} {'requests':>9} {'refused':>8} {'CPU us/event':>13} {'RSS MB':>7}")
    for case in chosen:
        f = summary[case.name]
        print(f"{case.name:44} {f['events']:>8} {f['events_per_s']:>10} {f['requests']:>9} {f['refused_share']:>8.1%} "
              f"{f['worker_cpu_us_per_event'] or '-':>13} {f['worker_peak_rss_mb'] or '-':>7}")
    for case in chosen:
        f = summary[case.name]
        print(f"{case.name}: window (most in flight at the sink, each second, median run): {f['window']}")
        if case.rate_limit:
            print(f"  admitted a second: {f['admitted']}; refused a second: {f['refused_per_s']}")
            print(f"  settled within 20% of {case.rate_limit:g}/s after {f['settled_s']} s (each run: {f['settled_each']});"
                  f" refused after settling: {f['refused_after']}")
    print(json.dumps(summary))


def figures(case: Case, runs: list[dict]) -> dict:
    middle = sorted(runs, key=lambda r: r["events_per_s"])[len(runs) // 2]  # the median run's timelines
    out = {"events": case.events, "events_per_s": round(statistics.median(r["events_per_s"] for r in runs)),
           "events_per_s_each": [round(r["events_per_s"]) for r in runs],
           "requests": round(statistics.median(r["requests"] for r in runs)),
           "refused_share": statistics.median(r["refused"] / r["requests"] for r in runs),
           "worker_cpu_us_per_event": loadgen.median_of(runs, "cpu_us_per_event"),
           "worker_peak_rss_mb": loadgen.median_of(runs, "rss_mb"),
           "window": middle["window"], "admitted": middle["admitted"], "refused_per_s": middle["refused_per_s"]}
    if case.rate_limit:
        settled = [r["settled_s"] for r in runs]
        out.update({"settled_each": settled,
                    "settled_s": statistics.median(settled) if None not in settled else None,
                    "refused_after": [None if r["refused_after"] is None else round(r["refused_after"], 4) for r in runs]})
    return out


if __name__ == "__main__":
    main()
