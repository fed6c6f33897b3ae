"""The import command at scale: 1,000,000 analytics.js events (bench/loadgen.py's ~1 KB event, fresh
UUID messageIds) from a gzip JSONL file into a fresh SQLite store (and Postgres with --postgres),
against the accept path in the same run: gunicorn serving the app on the same backend, 100-event
batches from the load generator for a few seconds, just before each import.

Usage: python bench/import_rate.py [--events 1000000] [--runs 3] [--seconds 5] [--postgres]
Prints each run's import events/s, the peak RSS of the import process and of each mapping process
it starts (VmHWM, read from /proc while it runs), the accept path's events/s just before it and
their ratio, then medians, and a JSON line.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import loadgen  # noqa: E402
from accept_path import app_env, free_port, postgres_schema, server  # noqa: E402


def write_file(path: Path, events: int) -> None:
    """JSONL, gzip level 1: what an export of a day of usage looks like."""
    stamp = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    bodies = loadgen.Bodies(stamp)
    with gzip.open(path, "wb", compresslevel=1) as out:
        for start in range(0, events, 10_000):
            out.write(b"".join(bodies.head + mid + bodies.tail + b"\n"
                               for mid in loadgen.uuid4_texts(min(10_000, events - start))))


def import_once(path: Path, store: dict) -> dict:
    """One `metronome-destination import` as a user runs it: its wall time, and the peak RSS of
    it and of each mapping process, watched every 50 ms (a peak is kept by the kernel, so only a
    process that lives under 50 ms could be missed)."""
    env = {**os.environ, **app_env(store)}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "destination", "import", str(path)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peaks: dict = {}
    while process.poll() is None:
        for pid in [process.pid, *loadgen.children(process.pid)]:
            if (rss := loadgen.peak_rss_mb(pid)) is not None:
                peaks[pid] = max(rss, peaks.get(pid, 0))
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    out = process.stdout.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"the import failed:\n{out}")
    events = int(out.split(" events in ")[0].rsplit(" ", 1)[1].replace(",", ""))
    mappers = [rss for pid, rss in peaks.items() if pid != process.pid]
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds, "peak_rss_mb": peaks[process.pid],
            "mapper_peak_rss_mb": max(mappers, default=0), "mappers": len(mappers), "summary": out.splitlines()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5, help="each accept-path run")
    parser.add_argument("--postgres", action="store_true", help="import into Postgres too (DATABASE_URL)")
    args = parser.parse_args()
    gunicorn = [str(Path(sys.executable).parent / "gunicorn"), "--config", "python:destination.gunicorn_config",
                "destination.wsgi:app"]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        path = Path(tmp) / "usage.jsonl.gz"
        write_file(path, args.events)
        print(f"{args.events:,} events, {path.stat().st_size / 2**20:.0f} MB gzip", flush=True)
        backends = ["sqlite"] + (["postgres"] if args.postgres else [])
        ports = {backend: free_port() for backend in backends}
        stack.enter_context(server(gunicorn, app_env({"SQLITE_PATH": f"{tmp}/accept.sqlite3"}), ports["sqlite"]))
        if args.postgres:
            url = stack.enter_context(postgres_schema())
            subprocess.run([sys.executable, "-m", "destination", "migrate"], cwd=ROOT, check=True, capture_output=True,
                           env={**os.environ, **app_env({"DATABASE_URL": url})})
            stack.enter_context(server(gunicorn, app_env({"DATABASE_URL": url}), ports["postgres"]))
        for port in ports.values():
            loadgen.run(port, "/v1/batch", 100, 1.0)  # warm-up
        runs: dict = {backend: [] for backend in backends}
        for run in range(args.runs):
            for backend in backends:
                accept = loadgen.run(ports[backend], "/v1/batch", 100, args.seconds)["events_per_s"]
                with (postgres_schema() if backend == "postgres" else nullcontext(None)) as url:
                    store = {"DATABASE_URL": url} if url else {"SQLITE_PATH": f"{tmp}/import-{run}.sqlite3"}
                    found = import_once(path, store)
                found.update(accept_events_per_s=accept, vs_accept=found["events_per_s"] / accept)
                runs[backend].append(found)
                print(f"run {run + 1} {backend:8} import {found['events_per_s']:>8,.0f} events/s, peak RSS "
                      f"{found['peak_rss_mb']:.0f} MB (each of its {found['mappers']} child processes at most "
                      f"{found['mapper_peak_rss_mb']:.0f} MB); accept path just before {accept:>8,.0f} events/s; "
                      f"ratio {found['vs_accept']:.2f}", flush=True)
    summary = {"benchmark": "import_rate", "events": args.events, "runs": args.runs}
    for backend, found in runs.items():
        for key in ("events_per_s", "peak_rss_mb", "mapper_peak_rss_mb", "accept_events_per_s", "vs_accept"):
            summary[f"{backend}_{key}"] = round(statistics.median(r[key] for r in found), 3)
        summary[f"{backend}_max_peak_rss_mb"] = round(max(r["peak_rss_mb"] for r in found), 1)
        summary[f"{backend}_max_mapper_peak_rss_mb"] = round(max(r["mapper_peak_rss_mb"] for r in found), 1)
        print(f"{backend}: import {summary[f'{backend}_events_per_s']:,.0f} events/s (median), accept path "
              f"{summary[f'{backend}_accept_events_per_s']:,.0f}; import / accept {summary[f'{backend}_vs_accept']:.2f}; "
              f"peak RSS median {summary[f'{backend}_peak_rss_mb']:.0f} MB, highest {summary[f'{backend}_max_peak_rss_mb']:.0f} MB; "
              f"mapping processes highest {summary[f'{backend}_max_mapper_peak_rss_mb']:.0f} MB")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
