"""Mapping + validation throughput on one core: events/s over realistic ~1 KB Segment track events.

Usage: python bench/mapping_validation.py [--events 20000] [--runs 3]
Runs the default mapping and mappings/llm_tokens.json (three mappings: two usage events from
each llm_request, with templates and transforms). Prints a table and a JSON line; each figure
is the median of the runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from destination import exact  # noqa: E402
from destination.mapping import load_mapping_set  # noqa: E402
from destination.receive import process_events  # noqa: E402


def make_events(n: int, now_s: float) -> list:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.123Z", time.gmtime(now_s - 60))
    events = []
    for i in range(n):
        events.append({
            "type": "track", "event": "llm_request", "messageId": f"5f1c3b2e-8d4a-4c1e-9b7a-{i:012d}",
            "userId": f"user_{i % 500}", "anonymousId": None, "timestamp": stamp, "sentAt": stamp,
            "properties": {"model": "gpt-5", "input_tokens": 1500 + i, "output_tokens": 320, "cost": 0.0042,
                           "region": "us-east-1", "cached": False, "latency_ms": 812.5, "endpoint": "/v1/chat",
                           "team": "platform", "tags": ["a", "b"]},
            "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "ip": "203.0.113.7",
                        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
                        "traits": {"plan": "pro", "email": "someone@example.com"}, "groupId": "org_77"},
            "integrations": {}, "version": 2,
        })
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    now_s = time.time()
    body = orjson.dumps(make_events(args.events, now_s))
    result = {"benchmark": "mapping_validation", "events": args.events, "event_bytes": len(body) // args.events,
              "runs": args.runs}
    for name, usage_per_event in (("default", 1), ("llm_tokens", 2)):
        mapping_set = load_mapping_set(ROOT / "mappings" / f"{name}.json")
        rates, parse_rates = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            events = exact.loads(body)
            parsed = time.perf_counter()
            processed = process_events(events, mapping_set, int(now_s * 1000), 32 * 1024)
            done = time.perf_counter()
            assert processed.counts["accepted"] == args.events and len(processed.rows) == args.events * usage_per_event
            rates.append(args.events / (done - parsed))
            parse_rates.append(args.events / (done - start))
        result[f"{name}_map_validate_events_per_s"] = round(statistics.median(rates))
        result[f"{name}_parse_map_validate_events_per_s"] = round(statistics.median(parse_rates))
    print(f"{'metric':40} {'value':>12}")
    for key, value in result.items():
        print(f"{key:40} {value!s:>12}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
