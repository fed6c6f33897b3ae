"""Memory: RSS of the web and worker processes while 1,000,000 events are queued with Metronome down.

Usage: python bench/memory.py [--events 1000000] [--runs 3] [--backend sqlite|postgres]
Starts the Procfile's web line (gunicorn) and a worker whose Metronome refuses every connection,
posts the events in 100-event batches, and samples every process's RSS from /proc throughout.
The backlog must live in the database, not in memory: the table and JSON line give the median
over runs of the peak RSS of each web process and of the worker (and the highest peak), the
queue depth reached and the database's size.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import loadgen  # noqa: E402
from accept_path import app_env, free_port, postgres_schema  # noqa: E402


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler(threading.Thread):
    """Peak RSS per process, every 0.2 s, until stopped."""

    def __init__(self, web_master: int, worker: int):
        super().__init__(daemon=True)
        self.web_master, self.worker = web_master, worker
        self.peaks: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.2):
            sample = {"web master": rss_mb(self.web_master), "worker": rss_mb(self.worker)}
            for i, pid in enumerate(sorted(loadgen.children(self.web_master))):
                sample[f"web process {i + 1}"] = rss_mb(pid)
            for name, value in sample.items():
                self.peaks[name] = max(self.peaks.get(name, 0.0), value)


def fill(port: int, events: int, threads: int = 4) -> None:
    batches = events // 100
    counter = iter(range(batches))
    lock = threading.Lock()
    refused: list[str] = []  # a sender thread cannot end the bench itself, so it says why here
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 60))
    headers = {"Authorization": loadgen.AUTH, "Content-Type": "application/json"}

    def sender():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                n = next(counter, None)
            if n is None or refused:
                return
            body = orjson.dumps([loadgen.event(f"mem-{n}-{i}", stamp) for i in range(100)])
            connection.request("POST", "/v1/batch", body, headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                refused.append(f"batch {n} answered {response.status}: {answer[:200]!r}")

    workers = [threading.Thread(target=sender) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if refused:
        raise SystemExit(refused[0])


def one_run(backend: str, events: int) -> dict:
    """Post `events` with Metronome down; each process's peak RSS, the queue depth and the database size."""
    with tempfile.TemporaryDirectory() as tmp, (postgres_schema() if backend == "postgres" else _nothing()) as url:
        store = {"DATABASE_URL": url} if url else {"SQLITE_PATH": f"{tmp}/memory.sqlite3"}
        # Metronome is down: nothing listens on port 9, so every delivery attempt is refused.
        env = {**os.environ, **app_env(store), "METRONOME_BASE_URL": "http://127.0.0.1:9", "LOG_LEVEL": "WARNING"}
        subprocess.run([sys.executable, "-m", "destination", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
        port = free_port()
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        web = subprocess.Popen([gunicorn, "--config", "python:destination.gunicorn_config", "destination.wsgi:app"],
                               cwd=ROOT, env={**env, "PORT": str(port)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        worker = subprocess.Popen([sys.executable, "-m", "destination", "worker"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            loadgen.wait_listening(port)
            sampler = Sampler(web.pid, worker.pid)
            sampler.start()
            started = time.perf_counter()
            fill(port, events)
            fill_s = time.perf_counter() - started
            time.sleep(5)  # the worker keeps trying against the full backlog; keep sampling
            sampler.stop.set()
            sampler.join()
            depth = _depth(store)
        finally:
            for process in (worker, web):
                process.terminate()
                process.wait(60)
        size_mb = Path(store["SQLITE_PATH"]).stat().st_size / 2**20 if "SQLITE_PATH" in store else None
    if depth != events:
        raise SystemExit(f"the queue holds {depth:,} events after {events:,} were posted and none delivered")
    return {"peaks": sampler.peaks, "depth": depth, "fill_s": fill_s, "size_mb": size_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    runs = [one_run(args.backend, args.events) for _ in range(args.runs)]
    names = sorted({name for run in runs for name in run["peaks"]})
    medians = {name: round(statistics.median(r["peaks"][name] for r in runs if name in r["peaks"]), 1) for name in names}
    highest = {name: round(max(r["peaks"].get(name, 0.0) for r in runs), 1) for name in names}
    last = runs[-1]
    summary = {"benchmark": "memory", "backend": args.backend, "events_posted": args.events, "runs": args.runs,
               "queue_depth": last["depth"], "fill_seconds": round(statistics.median(r["fill_s"] for r in runs), 1),
               "database_mb": round(last["size_mb"], 1) if last["size_mb"] else None,
               "peak_rss_mb": medians, "highest_peak_rss_mb": highest}
    print(f"{'process':16} {'peak RSS MB (median)':>21} {'highest':>8}")
    for name in names:
        print(f"{name:16} {medians[name]:>21.1f} {highest[name]:>8.1f}")
    print(f"queue depth {last['depth']:,} after {summary['fill_seconds']:.0f} s of posting (median); "
          f"database {summary['database_mb']} MB")
    print(json.dumps(summary))


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _depth(store: dict) -> int:
    from destination.config import load_settings
    from destination.queue.connect import open_queue

    queue = open_queue(load_settings(env={**store, "METRONOME_API_TOKEN": "x"}))
    try:
        return queue.depth()
    finally:
        queue.close()


if __name__ == "__main__":
    main()
