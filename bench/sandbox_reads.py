"""How fast the sandbox answers billing reads once it holds many events.

Usage: python bench/sandbox_reads.py [--events 100000] [--customers 50] [--runs 5]
Seeds the guide (metric, product, rate card), makes customers with contracts, then ingests the
events over loopback HTTP in batches of 100, spread over the last 20 days and three regions.
Then each read goes over HTTP, `--runs` times: usage in DAY windows grouped by region for every
customer, usage groups and the draft invoice for one customer, and a previewEvents. Prints a
table of median and slowest milliseconds, and a JSON line.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from destination.sandbox.seed import load_seed, read_seed  # noqa: E402
from destination.sandbox.server import SandboxServer  # noqa: E402

TRANSFER = "5e2d1c0b-0000-4000-8000-000000000001"
CARD = "5e2d1c0b-0000-4000-8000-000000000021"


def fill(server: SandboxServer, session: requests.Session, events: int, customers: int) -> list[str]:
    load_seed(server.state, read_seed("guide"))
    ids = []
    for i in range(customers):
        cid = session.post(server.url + "/v1/customers", json={"name": f"c{i}", "ingest_aliases": [f"c{i}"]}).json()["data"]["id"]
        session.post(server.url + "/v1/contracts/create",
                     json={"customer_id": cid, "rate_card_id": CARD, "starting_at": "2026-01-01T00:00:00Z"})
        ids.append(cid)
    rng, now = random.Random(1), time.time()
    batch = []
    for n in range(events):
        stamp = datetime.fromtimestamp(now - rng.randrange(20 * 86400), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        batch.append({"transaction_id": f"e{n}", "customer_id": f"c{n % customers}", "event_type": "transfer",
                      "timestamp": stamp, "properties": {"bytes": str(rng.randrange(1, 10**6)),
                                                         "region": rng.choice(["us-east-1", "eu-west-1", "ap-south-1"])}})
        if len(batch) == 100:
            assert session.post(server.url + "/v1/ingest", data=orjson.dumps(batch)).status_code == 200
            batch = []
    return ids


def timed(runs: int, call) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        response = call()
        out.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    server = SandboxServer(tokens=("bench",)).start()
    session = requests.Session()
    session.headers["Authorization"] = "Bearer bench"
    started = time.perf_counter()
    ids = fill(server, session, args.events, args.customers)
    fill_s = time.perf_counter() - started
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    span = {"starting_on": (today - timedelta(days=21)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ending_before": (today + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    reads = {
        "usage_day_by_region_all_customers": lambda: session.post(server.url + "/v1/usage", json={
            **span, "window_size": "DAY", "billable_metrics": [{"id": TRANSFER, "group_by": {"key": "region"}}]}),
        "usage_groups_one_customer": lambda: session.post(server.url + "/v1/usage/groups", json={
            **span, "window_size": "DAY", "customer_id": ids[0], "billable_metric_id": TRANSFER, "group_key": ["region"]}),
        "draft_invoice_one_customer": lambda: session.get(f"{server.url}/v1/customers/{ids[0]}/invoices?status=DRAFT"),
        "preview_events_one_customer": lambda: session.post(f"{server.url}/v1/customers/{ids[0]}/previewEvents", json={
            "events": [{"event_type": "transfer", "properties": {"bytes": "1000", "region": "eu-west-1"}}], "mode": "merge"}),
    }
    results = {}
    print(f"{args.events:,} events for {args.customers} customers ingested in {fill_s:.1f} s")
    print(f"{'read':38} {'median ms':>10} {'slowest ms':>11}")
    for name, call in reads.items():
        times = timed(args.runs, call)
        results[name] = {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
        print(f"{name:38} {results[name]['median_ms']:>10} {results[name]['max_ms']:>11}")
    server.stop()
    print(json.dumps({"benchmark": "sandbox_reads", "events": args.events, "customers": args.customers,
                      "runs": args.runs, "fill_seconds": round(fill_s, 1), **results}))


if __name__ == "__main__":
    main()
