"""`metronome-destination serve | worker | migrate | check | wait | import | sandbox`: settings from the environment,
`--flag` overrides. Exit codes: 0 ok, 1 a check failed, 2 bad settings or mappings."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from destination import config
from destination.errors import ConfigError
from destination.startup import settled

log = logging.getLogger("destination.cli")
SANDBOX_TOKEN = "sandbox-token"
SANDBOX_WRITE_KEY = "sandbox-write-key"
SANDBOX_ADMIN_TOKEN = "sandbox-admin-token"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from destination.ops.metrics_dir import ensure_metrics_dir

    ensure_metrics_dir()
    try:
        return args.run(args)
    except ConfigError as exc:
        from destination.ops.logs import redact

        print(f"metronome-destination: {redact(str(exc))}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metronome-destination", description="A CDP destination for Metronome usage billing.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, run, help_text: str, description: str, settings: bool = True):
        sub = commands.add_parser(name, help=help_text, description=description)
        if settings:
            config.add_flags(sub)
        sub.set_defaults(run=run)
        return sub

    command("serve", _serve, "Receive events over HTTP and deliver them in-process.",
            "Receive CDP events over HTTP (gunicorn) and run a delivery thread in each web process.")
    command("worker", _worker, "Run only the delivery worker.",
            "Claim queued usage events and deliver them to Metronome until SIGTERM.")
    command("migrate", _migrate, "Apply database migrations (the Procfile's release step).",
            "Check settings and mappings, then bring the database schema up to date.")
    check = command("check", _check, "Check settings, mappings, the database and the Metronome token.",
                    "Exit 0 when everything works; otherwise print each problem and exit 1 (2 for bad settings).")
    check.add_argument("--skip-token", action="store_true", help="Do not call Metronome (offline checks only).")
    wait = command("wait", _wait, "Wait until every queued event is delivered or set aside.",
                   "Exit 0 once the queue is empty; 1 if events are still queued after --timeout seconds.")
    wait.add_argument("--timeout", type=float, default=30, help="Seconds to wait at most (default 30).")
    imports = command("import", _import, "Import events from files (JSONL or JSON arrays, gzip or plain).",
                      "Run Segment-spec events from files through the same mapping, validation and queue as the "
                      "HTTP routes. A re-run is safe (same transaction_ids); an interrupted import resumes. "
                      "Exit 0 when done, 1 when the store fails, 2 when a file is not JSON, 130 when interrupted.")
    imports.add_argument("files", nargs="+", metavar="FILE", help="A path, or - for standard input.")
    imports.add_argument("--dry-run", action="store_true", help="Store and send nothing; print what would happen.")
    imports.add_argument("--jobs", type=_at_least_one, default=os.cpu_count() or 1,
                         help="Processes that map events (default: one per CPU, here %(default)s).")
    imports.add_argument("--source", default="import",
                         help="The source label mappings see, as a write key's label (default import).")
    sandbox = command("sandbox", _sandbox, "Run a local Metronome: ingest, customers, metrics, usage, invoices.",
                      "A local Metronome for development: the API's billing loop in memory, with read-back at "
                      "/sandbox/events and /sandbox/totals.", settings=False)
    sandbox.add_argument("--host", default="127.0.0.1", help="Listen address (default 127.0.0.1).")
    sandbox.add_argument("--port", type=int, default=8090, help="Listen port (default 8090).")
    sandbox.add_argument("--token", action="append", default=None, help=f"Accepted bearer token (repeatable; default {SANDBOX_TOKEN}).")
    sandbox.add_argument("--seed", default="none", help="Start from a seed file: a path, `guide` (the shipped one) or `none` (default).")
    sandbox.add_argument("--max-property-bytes", type=_at_least_one, default=256,
                         help="Refuse a batch holding a longer property value, as Metronome does (default 256).")
    return parser


def _settings(args, role: str, need_token: bool = True, **forced) -> config.Settings:
    from destination.startup import prepare

    names = {s.name for s in config.SETTINGS}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    overrides.update(forced)
    settings = config.load_settings(overrides=overrides, need_token=need_token)
    prepare(settings, role)
    return settings


def _serve(args) -> int:
    from destination.ops.metrics_dir import use_metrics_dir

    use_metrics_dir()  # before prometheus_client is imported: gunicorn's processes share counters
    from destination.mapping.mapping_set import load_mapping_set
    from destination.serve import Server

    settings = _settings(args, "web", deliver_in_web="true")
    sandbox = None
    if settings.sandbox:
        settings, sandbox = _start_sandbox(settings)
    load_mapping_set(settings.mappings_path)  # refuse to start on an invalid mapping, before forking
    log.info("receiving on http://%s:%s/v1/events, delivering to %s", settings.host, settings.port, settings.metronome_base_url)
    master = os.getpid()
    try:
        Server(settings).run()
    finally:
        # gunicorn's forked workers leave run() through here too; only the master owns the sandbox.
        if sandbox and os.getpid() == master:
            sandbox.stop()
    return 0


def _start_sandbox(settings, port: int | None = None):
    from destination.sandbox.server import SandboxServer

    sandbox = SandboxServer(port=settings.sandbox_port if port is None else port, tokens=(SANDBOX_TOKEN,),
                            max_property_bytes=settings.sandbox_max_property_bytes)
    _seed(sandbox, settings.sandbox_seed)
    sandbox.start()
    changes = {"metronome_base_url": sandbox.url, "metronome_api_token": SANDBOX_TOKEN}
    if not settings.write_keys and not settings.allow_unauthenticated:
        # Sandbox mode never reaches Metronome, so a well-known demo key is safe and lets the
        # quickstart work with one command. Real deployments must set WRITE_KEYS.
        changes["write_keys"] = {SANDBOX_WRITE_KEY: "sandbox"}
        log.warning("sandbox mode: write key %r accepted (set WRITE_KEYS to choose your own)", SANDBOX_WRITE_KEY)
    if not settings.admin_tokens:  # the same reasoning: so the quickstart can open /admin/ui/
        changes["admin_tokens"] = {SANDBOX_ADMIN_TOKEN: "sandbox"}
        log.warning("sandbox mode: admin token %r accepted at /admin (set ADMIN_TOKENS to choose your own)",
                    SANDBOX_ADMIN_TOKEN)
    log.info("sandbox Metronome at %s (read back: %s/sandbox/totals)", sandbox.url, sandbox.url)
    return settings.replace(**changes), sandbox


def _worker(args) -> int:
    from destination.queue.connect import open_queue
    from destination.serve import stop_delivery
    from destination.worker.build import build_worker

    settings = _settings(args, "worker")
    sandbox = None
    if settings.sandbox:
        settings, sandbox = _start_sandbox(settings)
    queue = open_queue(settings)
    worker = build_worker(settings, queue)
    settled()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=worker.run, args=(stop,), name="delivery", daemon=True)
    thread.start()
    log.info("delivery worker started, delivering to %s", settings.metronome_base_url)
    while not stop.wait(1):  # the main thread only waits for SIGTERM/SIGINT
        pass
    finished = stop_delivery(worker, stop, thread, settings.shutdown_grace_seconds)
    queue.close()
    if sandbox:
        sandbox.stop()
    log.info("delivery worker stopped", extra={"fields": {"stats": dict(worker.stats), "finished_in_grace": finished}})
    return 0


def _import(args) -> int:
    from destination.import_command import run

    settings = _settings(args, "import", need_token=False)  # it queues; the worker delivers
    return run(settings, args.files, args.dry_run, args.source, args.jobs)


def _migrate(args) -> int:
    from destination.mapping.mapping_set import load_mapping_set
    from destination.mapping.versions import MappingStore
    from destination.queue.connect import open_queue

    settings = _settings(args, "release")
    load_mapping_set(settings.mappings_path)  # a release with a broken mapping file must fail
    queue = open_queue(settings, migrate=False)
    try:
        applied = queue.migrate()
        version = queue.schema_version()
        MappingStore(queue, settings.mappings_path).seed()  # a new database starts from the shipped mappings
        live = queue.latest_mapping_version()
    finally:
        queue.close()
    print(f"database schema at version {version} ({applied} step(s) applied); live mappings v{live}")
    return 0


def _check(args) -> int:
    """With --sandbox, the built-in sandbox is started and checked, never the internet; with
    --skip-token, Metronome is not called and no token is needed."""
    from destination.check import run_checks
    from destination.ops.logs import redact

    settings = _settings(args, "check", need_token=not args.skip_token)
    sandbox = None
    if settings.sandbox and not args.skip_token:
        settings, sandbox = _start_sandbox(settings, port=0)  # a free port: `serve --sandbox` may hold 8090
    try:
        results = run_checks(settings, token=not args.skip_token)
    finally:
        if sandbox:
            sandbox.stop()
    for result in results:
        print(redact(f"{'ok  ' if result.ok else 'FAIL'} {result.name}: {result.detail}"))
    failed = [r.name for r in results if not r.ok]
    print(f"{len(results) - len(failed)} of {len(results)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _sandbox(args) -> int:
    from destination.ops.logs import configure
    from destination.sandbox.server import SandboxServer

    configure()
    server = SandboxServer(args.host, args.port, tokens=tuple(args.token or (SANDBOX_TOKEN,)),
                           max_property_bytes=args.max_property_bytes)
    _seed(server, args.seed)
    log.info("Metronome sandbox on %s (tokens: %d)", server.url, len(server.state.tokens))
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return int(text)


def _seed(sandbox, seed: str) -> None:
    """Load a seed into the sandbox and print what it made; a bad seed stops the command (exit 2)."""
    from destination.sandbox.seed import load_seed, read_seed

    if seed.lower() in ("none", ""):
        return
    try:
        lines = load_seed(sandbox.state, read_seed(seed))
    except ValueError as exc:
        raise ConfigError(f"SANDBOX_SEED: {exc}") from None
    print(f"sandbox seeded from {seed}:\n  " + "\n  ".join(lines), flush=True)


def _wait(args) -> int:
    """For scripts and the quickstart: delivery is asynchronous, so a read-back waits for it here."""
    import time

    from destination.queue.connect import open_queue

    settings = _settings(args, "wait", need_token=False)
    queue = open_queue(settings, migrate=False)
    deadline = time.monotonic() + args.timeout
    try:
        while (depth := queue.depth()) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        queue.close()
    if depth:
        print(f"{depth} event(s) still queued after {args.timeout:g} s; see /readyz and the worker's log")
        return 1
    print("every accepted event was delivered or set aside as a dead letter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
