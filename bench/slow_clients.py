"""Slow clients against `serve`: other senders' latency with 0 and with N connections that each
send their request a byte a second (as a slowloris client does).

Usage: python bench/slow_clients.py [--slow 64] [--requests 400]
Starts `metronome-destination serve --sandbox` on free ports with a fresh SQLite file, sends
single events one after another from one keep-alive session, and prints p50/p99/max in ms for
each case and their ratio. The slow clients reconnect whenever the server cuts them off
(REQUEST_READ_TIMEOUT_SECONDS, 408), so they press for the whole run.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from accept_path import free_port  # noqa: E402

HEAD = b"POST /v1/events HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n"


def trickle(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                for byte in HEAD:
                    conn.send(bytes([byte]))
                    if stop.wait(1.0):
                        return
        except OSError:
            stop.wait(0.1)


def latencies(port: int, count: int) -> list[float]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    took = []
    with requests.Session() as session:
        for i in range(count):
            event = {"type": "track", "event": "transfer", "messageId": f"b{i}-{time.time_ns()}", "userId": "c1",
                     "timestamp": now, "properties": {"bytes": 1}}
            start = time.perf_counter()
            answer = session.post(f"http://127.0.0.1:{port}/v1/events", json=event, auth=("sandbox-write-key", ""), timeout=30)
            took.append((time.perf_counter() - start) * 1000)
            answer.raise_for_status()
    return sorted(took)


def figures(took: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(took), 1), "p99_ms": round(took[int(len(took) * 0.99) - 1], 1),
            "max_ms": round(took[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=64)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    port, sandbox_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        server = subprocess.Popen([sys.executable, "-m", "destination", "serve", "--sandbox", "--port", str(port),
                                   "--sandbox-port", str(sandbox_port), "--sqlite-path", f"{tmp}/q.sqlite3"],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("serve did not start")
                time.sleep(0.2)
            latencies(port, 50)  # warm-up
            quiet = figures(latencies(port, args.requests))
            stop = threading.Event()
            slow = [threading.Thread(target=trickle, args=(port, stop), daemon=True) for _ in range(args.slow)]
            for thread in slow:
                thread.start()
            time.sleep(2)
            pressed = figures(latencies(port, args.requests))
            stop.set()
        finally:
            server.terminate()
            server.wait(30)
    result = {"benchmark": "slow_clients", "requests": args.requests, "slow_connections": args.slow,
              "without_slow": quiet, "with_slow": pressed, "p99_ratio": round(pressed["p99_ms"] / quiet["p99_ms"], 2)}
    print(f"{'case':28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, row in (("no slow connections", quiet), (f"{args.slow} slow connections", pressed)):
        print(f"{name:28} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['max_ms']:>8}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
