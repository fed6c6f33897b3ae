"""Mapping + validation throughput on one core: events/s over realistic ~1 KB Segment track events.

Usage: python bench/mapping_validation.py [--events 20000] [--runs 3]
Events come in 100-event bodies, each parsed and then mapped and validated as a request would
be (process_events: map, validate, and serialise each usage event and raw event for storage).
Runs the default mapping and mappings/llm_tokens.json (three mappings: two usage events from
each llm_request, with templates and transforms), then the default mapping again with the billing
check (BILLING_CHECK=warn) against a catalog of the guide's metrics, the two interleaved run by run
so they share the machine's state. Prints a table and a JSON line; each figure is the median of
the runs.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from destination.billing.judge import BillingCheck  # noqa: E402
from destination.billing.matcher import Catalog, Metric  # noqa: E402
from destination.intake.pipeline import process_events  # noqa: E402
from destination.mapping.mapping_set import load_mapping_set  # noqa: E402
from destination.sandbox.seed import read_seed  # noqa: E402
from destination.payload import exact  # noqa: E402
from destination.payload.validate import Limits  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import loadgen  # noqa: E402

REQUEST_EVENTS = 100


def make_events(n: int, now_s: float) -> list:
    """The load generator's ~1 KB analytics.js track event, n times with distinct users and random
    UUID messageIds (seeded, so every run maps the same events)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.123Z", time.gmtime(now_s - 60))
    ids = random.Random(42)
    return [{**loadgen.event(str(uuid.UUID(int=ids.getrandbits(128), version=4)), stamp), "userId": f"user_{i % 500}"}
            for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    now_s = time.time()
    events = make_events(args.events, now_s)
    # Request-sized bodies, parsed one at a time as the server does: a single 20,000-event list
    # would keep every parsed event alive and make the garbage collector walk them all, which a
    # server answering 100-event requests never does.
    bodies = [orjson.dumps(events[start:start + REQUEST_EVENTS]) for start in range(0, args.events, REQUEST_EVENTS)]
    result = {"benchmark": "mapping_validation", "events": args.events, "event_bytes": sum(map(len, bodies)) // args.events,
              "events_per_request": REQUEST_EVENTS, "runs": args.runs}
    del events
    for name, usage_per_event in (("default", 1), ("llm_tokens", 2)):
        mapping_set = load_mapping_set(ROOT / "destination" / "mappings" / f"{name}.json")
        rates, parse_rates = [], []
        for _ in range(args.runs):
            parsing = mapping = 0.0
            for body in bodies:
                start = time.perf_counter()
                chunk = exact.loads(body)
                parsed = time.perf_counter()
                processed = process_events(chunk, mapping_set, int(now_s * 1000), Limits())
                done = time.perf_counter()
                assert processed.counts["accepted"] == len(chunk) and len(processed.rows) == len(chunk) * usage_per_event
                parsing, mapping = parsing + parsed - start, mapping + done - parsed
            rates.append(args.events / mapping)
            parse_rates.append(args.events / (parsing + mapping))
        result[f"{name}_map_validate_events_per_s"] = round(statistics.median(rates))
        result[f"{name}_parse_map_validate_events_per_s"] = round(statistics.median(parse_rates))
    result.update(billing_check_cost(bodies, args.events, args.runs, now_s))
    print(f"{'metric':40} {'value':>12}")
    for key, value in result.items():
        print(f"{key:40} {value!s:>12}")
    print(json.dumps(result))


class StaticCatalog:
    """The catalog a web process holds between its once-a-second reads: the guide's metrics and
    an LLM-tokens metric the load generator's events match, with its users known."""

    def __init__(self):
        metrics = [Metric.from_api(m) for m in read_seed("guide")["billable_metrics"]]
        self.catalog = Catalog(metrics, {f"user_{i}": True for i in range(500)}, 1)

    def get(self, fresh: bool = False):
        return self.catalog


def billing_check_cost(bodies: list, events: int, runs: int, now_s: float) -> dict:
    """The check's cost as paired differences: each 100-event body goes through with the check
    off and with it on, one right after the other (which goes first alternates), so the machine's
    drift, which on a shared VM swings a run by a third, falls on both halves of each pair."""
    mapping_set = load_mapping_set(ROOT / "destination" / "mappings" / "default.json")
    check = BillingCheck("warn", StaticCatalog())
    spent: dict = {"off": [], "warn": []}
    for run in range(runs):
        for index, body in enumerate(bodies):
            for mode, billing in (("off", None), ("warn", check))[::1 if (index + run) % 2 else -1]:
                chunk = exact.loads(body)
                start = time.process_time()
                processed = process_events(chunk, mapping_set, int(now_s * 1000), Limits(), billing=billing)
                spent[mode].append(time.process_time() - start)
                if billing is not None:
                    assert processed.results[0]["billing"] == [{"bills": True}], processed.results[0]
    extra_us = statistics.median(w - o for o, w in zip(spent["off"], spent["warn"])) / (events / len(bodies)) * 1e6
    off, warn = sum(spent["off"]), sum(spent["warn"])
    return {"default_check_off_events_per_s": round(events * runs / off), "default_check_warn_events_per_s": round(events * runs / warn),
            "billing_check_us_per_event": round(extra_us, 2),
            "warn_vs_off": round(statistics.median(o / w for o, w in zip(spent["off"], spent["warn"])), 3)}


if __name__ == "__main__":
    main()
