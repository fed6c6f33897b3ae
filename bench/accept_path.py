"""Accept path: POSTs to gunicorn serving the app, durable into SQLite and into Postgres, against
a minimal relay under the same gunicorn settings and the same load generator in the same run.

Usage: python bench/accept_path.py [--seconds 5] [--runs 3]
Postgres comes from DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test); the bench
works in a schema of its own and drops it. Prints a table and a JSON line of medians, with the
CPU time the gunicorn processes spent per event (Postgres's own processes are not counted).
Batches also go to the app with a store that does nothing (nostore_app.py): the ceiling of our
Python work, so the store's part of the gap to the relay is a figure. The SQLite and Postgres
apps run with BILLING_CHECK=OFF; a second SQLite app runs with WARN against a catalog written
into its store beforehand (the guide's metrics, the load generator's user known), and its
batches are compared with the plain SQLite app's run by run: the check's cost end to end.
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
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import loadgen  # noqa: E402

POSTGRES = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(command: list[str], env: dict, port: int, cwd: Path = ROOT, log: Path | None = None):
    """A server process for the bench; its output goes to `log`, read when a run goes wrong."""
    with open(log or os.devnull, "wb") as output:
        process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env, "PORT": str(port)},
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        loadgen.wait_listening(port, "/healthz")
        yield process.pid
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def postgres_schema():
    import psycopg

    name = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        separator = "&" if "?" in POSTGRES else "?"
        yield f"{POSTGRES}{separator}options={quote(f'-csearch_path={name}')}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def _tail(log: Path, lines: int = 20) -> str:
    """The server's own messages, without its access lines."""
    kept = [line for line in log.read_text(errors="replace").splitlines() if "destination.access" not in line]
    return "\n".join(kept[-lines:])


def app_env(store: dict) -> dict:
    return {"WRITE_KEYS": f"bench:{loadgen.WRITE_KEY}", "METRONOME_API_TOKEN": "bench", "DELIVER_IN_WEB": "false",
            "METRONOME_BASE_URL": "http://127.0.0.1:9", "HOST": "127.0.0.1", "DATABASE_URL": "",
            "BILLING_CHECK": "OFF", **store}


def seeded_catalog(sqlite_path: str) -> None:
    """Write the catalog a worker would have read: the guide's metrics, and the bench's user known."""
    sys.path.insert(0, str(ROOT))
    import orjson

    from destination.billing.catalog import KEY
    from destination.config import load_settings
    from destination.queue.connect import open_queue
    from destination.sandbox.seed import read_seed

    metrics = [{k: v for k, v in m.items() if k != "key"} for m in read_seed("guide")["billable_metrics"]]
    queue = open_queue(load_settings(env={**app_env({"SQLITE_PATH": sqlite_path})}))
    queue.set_state(KEY, orjson.dumps({"metrics": metrics, "refreshed_ms": 1, "error": None,
                                       "customers": {"user_42": [True, 1]}}).decode())
    queue.close()


def measured_run(pid: int, port: int, path: str, per_request: int, seconds: float) -> dict:
    """One load-generator run, plus the CPU time the server (gunicorn master and workers) spent
    per event: the figure that says why a share of the relay is what it is, since the relay and
    the load generator share the same two cores."""
    before = loadgen.cpu_seconds(pid, with_children=True)
    result = loadgen.run(port, path, per_request, seconds, threads=4 if per_request > 1 else 8)
    after = loadgen.cpu_seconds(pid, with_children=True)
    known = before is not None and after is not None and result["events"]
    return {**result, "server_cpu_us_per_event": (after - before) / result["events"] * 1e6 if known else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--billing-pairs", type=int, default=8,
                        help="extra back-to-back runs of BILLING_CHECK off and warn, for their ratio")
    args = parser.parse_args()
    gunicorn = [str(Path(sys.executable).parent / "gunicorn")]
    app_command = gunicorn + ["--config", "python:destination.gunicorn_config", "destination.wsgi:app"]
    # The relay gets what gunicorn_config gives the app: 2 processes x 8 threads, gthread, keep-alive 5 s,
    # a listening socket per process.
    relay_command = gunicorn + ["-w", "2", "-k", "gthread", "--threads", "8", "--keep-alive", "5", "--reuse-port",
                                "--chdir", str(ROOT / "bench"), "minimal_relay:app"]
    nostore_command = app_command[:-1] + ["--pythonpath", str(ROOT / "bench"), "nostore_app:app"]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        # All the servers stay up (idle ones cost nothing) and the runs take turns: the
        # machine's speed drifts by a fifth or more within minutes, so each of our runs is
        # compared with the relay run just before it, not with one from minutes earlier.
        ports = {"relay": free_port(), "sqlite": free_port(), "postgres": free_port(), "nostore": free_port(),
                 "warn": free_port()}
        seeded_catalog(f"{tmp}/warn.sqlite3")
        logs = {name: Path(tmp) / f"{name}.log" for name in ports}
        pids = {"relay": stack.enter_context(server(relay_command, {}, ports["relay"], log=logs["relay"])),
                "sqlite": stack.enter_context(server(app_command, app_env({"SQLITE_PATH": f"{tmp}/bench.sqlite3"}),
                                                     ports["sqlite"], log=logs["sqlite"])),
                "nostore": stack.enter_context(server(nostore_command, app_env({"SQLITE_PATH": f"{tmp}/nostore.sqlite3"}),
                                                      ports["nostore"], log=logs["nostore"])),
                "warn": stack.enter_context(server(app_command, app_env({"SQLITE_PATH": f"{tmp}/warn.sqlite3",
                                                                         "BILLING_CHECK": "WARN"}),
                                                   ports["warn"], log=logs["warn"]))}
        url = stack.enter_context(postgres_schema())
        subprocess.run([sys.executable, "-m", "destination", "migrate"], cwd=ROOT, check=True, capture_output=True,
                       env={**os.environ, **app_env({"DATABASE_URL": url})})
        pids["postgres"] = stack.enter_context(server(app_command, app_env({"DATABASE_URL": url}), ports["postgres"],
                                                      log=logs["postgres"]))
        cases = [(f"{name}_{shape}", ports[name], path, per_request)
                 for shape, path, per_request in (("batch100", "/v1/batch", 100), ("single", "/v1/track", 1))
                 for name in ("relay", "sqlite", "postgres")]
        cases.insert(3, ("nostore_batch100", ports["nostore"], "/v1/batch", 100))  # batches only: the ceiling
        cases.insert(2, ("warn_batch100", ports["warn"], "/v1/batch", 100))  # right after the plain SQLite run
        pairs = [("sqlite_batch100", ports["sqlite"]), ("warn_batch100", ports["warn"])]
        for _, port, path, per_request in cases:
            loadgen.run(port, path, per_request, 1.0)  # warm-up
        runs: dict = {case: [] for case, *_ in cases}
        for _ in range(args.runs):
            for case, port, path, per_request in cases:
                result = measured_run(pids[case.split("_")[0]], port, path, per_request, args.seconds)
                refused = {status: n for status, n in result["statuses"].items() if status != 200}
                if refused or not result["statuses"]:
                    raise SystemExit(f"{case}: answers other than 200: {refused}\n"
                                     f"the server's last lines:\n{_tail(logs[case.split('_')[0]])}")
                runs[case].append(result)
        # The check's cost is a few per cent, less than the machine's drift between runs minutes
        # apart, so it gets pairs of its own: off and warn back to back, the order alternating.
        paired: dict = {"sqlite_batch100": [], "warn_batch100": []}
        for pair in range(args.billing_pairs):
            for case, port in pairs[::1 if pair % 2 else -1]:
                paired[case].append(measured_run(pids[case.split("_")[0]], port, "/v1/batch", 100, args.seconds))
    results = {case: {**loadgen.medians(case_runs), "server_cpu_us_per_event": loadgen.median_of(case_runs, "server_cpu_us_per_event")}
               for case, case_runs in runs.items()}

    def share(case: str, relay: str) -> float:
        """The median over runs of (our run / the relay run just before it)."""
        return round(statistics.median(ours["events_per_s"] / base["events_per_s"]
                                       for ours, base in zip(runs[case], runs[relay])), 3)

    summary = {"benchmark": "accept_path", "seconds": args.seconds, "runs": args.runs, **results,
               "sqlite_batch_vs_relay": share("sqlite_batch100", "relay_batch100"),
               "postgres_batch_vs_relay": share("postgres_batch100", "relay_batch100"),
               "nostore_batch_vs_relay": share("nostore_batch100", "relay_batch100"),
               "sqlite_single_vs_relay": share("sqlite_single", "relay_single"),
               "postgres_single_vs_relay": share("postgres_single", "relay_single"),
               "billing_warn_vs_off_events_per_s": round(statistics.median(
                   w["events_per_s"] / o["events_per_s"] for o, w in zip(paired["sqlite_batch100"], paired["warn_batch100"])), 3),
               "billing_warn_minus_off_server_cpu_us_per_event": round(statistics.median(
                   w["server_cpu_us_per_event"] - o["server_cpu_us_per_event"]
                   for o, w in zip(paired["sqlite_batch100"], paired["warn_batch100"])), 1),
               "billing_pairs": args.billing_pairs}
    print(f"{'case':20} {'events/s':>10} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'server CPU us/event':>20}")
    for case, figures in results.items():
        print(f"{case:20} {figures['events_per_s']:>10.0f} {figures['requests_per_s']:>11.0f} "
              f"{figures['p50_ms']:>8.1f} {figures['p99_ms']:>8.1f} {figures['server_cpu_us_per_event'] or '-':>20}")
    print(f"accept path as a share of the relay run just before it (median of runs): 100-event batches, SQLite "
          f"{summary['sqlite_batch_vs_relay']:.0%}, Postgres {summary['postgres_batch_vs_relay']:.0%}; single events, "
          f"SQLite {summary['sqlite_single_vs_relay']:.0%}, Postgres {summary['postgres_single_vs_relay']:.0%}; "
          f"batches with a store that does nothing (bench/nostore_app.py) {summary['nostore_batch_vs_relay']:.0%}")
    print(f"BILLING_CHECK=WARN against OFF, SQLite batches, median of {args.billing_pairs} back-to-back pairs: "
          f"{summary['billing_warn_vs_off_events_per_s']:.1%} of the events/s, "
          f"{summary['billing_warn_minus_off_server_cpu_us_per_event']:+.1f} us of server CPU per event")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
