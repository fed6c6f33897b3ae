"""`metronome-destination serve | worker | sandbox`: settings from the environment, `--flag` overrides."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from . import config
from .errors import ConfigError

log = logging.getLogger("destination.cli")
SANDBOX_TOKEN = "sandbox-token"
SANDBOX_WRITE_KEY = "sandbox-write-key"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"metronome-destination: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metronome-destination", description="A CDP destination for Metronome usage billing.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="Receive events over HTTP and deliver them in-process.",
                                description="Receive CDP events over HTTP (gunicorn) and run the delivery worker in each web process.")
    serve.add_argument("--web-concurrency", type=int, default=None, metavar="N", help="gunicorn worker processes (env WEB_CONCURRENCY; default 1).")
    config.add_flags(serve)
    serve.set_defaults(run=_serve)
    worker = commands.add_parser("worker", help="Run only the delivery worker.",
                                 description="Claim queued usage events and deliver them to Metronome until SIGTERM.")
    config.add_flags(worker)
    worker.set_defaults(run=_worker)
    sandbox = commands.add_parser("sandbox", help="Run a local Metronome-compatible /v1/ingest.",
                                  description="A local Metronome /v1/ingest with read-back at /sandbox/events and /sandbox/totals.")
    sandbox.add_argument("--host", default="127.0.0.1", help="Listen address (default 127.0.0.1).")
    sandbox.add_argument("--port", type=int, default=8090, help="Listen port (default 8090).")
    sandbox.add_argument("--token", action="append", default=None, help=f"Accepted bearer token (repeatable; default {SANDBOX_TOKEN}).")
    sandbox.set_defaults(run=_sandbox)
    return parser


def _settings(args) -> config.Settings:
    names = {s.name for s in config.SETTINGS}
    return config.load_settings(overrides={k: v for k, v in vars(args).items() if k in names})


def _serve(args) -> int:
    import os

    from .serve import run_gunicorn

    settings = _settings(args)
    sandbox = None
    if settings.sandbox:
        settings, sandbox = _start_sandbox(settings)
    from .mapping import load_mapping_set

    load_mapping_set(settings.mappings_path)  # refuse to start on an invalid mapping, before forking
    workers = args.web_concurrency or int(os.environ.get("WEB_CONCURRENCY", "1"))
    log.info("receiving on http://%s:%s/v1/events, delivering to %s", settings.host, settings.port, settings.metronome_base_url)
    try:
        run_gunicorn(settings, workers=workers, with_delivery=True)
    finally:
        if sandbox:
            sandbox.stop()
    return 0


def _start_sandbox(settings):
    from .sandbox import SandboxServer

    sandbox = SandboxServer(port=settings.sandbox_port, tokens=(SANDBOX_TOKEN,)).start()
    changes = {"metronome_base_url": sandbox.url, "metronome_api_token": SANDBOX_TOKEN}
    if not settings.write_keys and not settings.allow_unauthenticated:
        # Sandbox mode never reaches Metronome, so a well-known demo key is safe and lets the
        # quickstart work with one command. Real deployments must set WRITE_KEYS.
        changes["write_keys"] = {SANDBOX_WRITE_KEY: "sandbox"}
        log.warning("sandbox mode: write key %r accepted (set WRITE_KEYS to choose your own)", SANDBOX_WRITE_KEY)
    log.info("sandbox Metronome at %s (read back: %s/sandbox/totals)", sandbox.url, sandbox.url)
    return settings.replace(**changes), sandbox


def _worker(args) -> int:
    from .delivery import build_worker
    from .queue import open_queue

    settings = _settings(args)
    sandbox = None
    if settings.sandbox:
        settings, sandbox = _start_sandbox(settings)
    queue = open_queue(settings)
    worker = build_worker(settings, queue)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("delivery worker started, delivering to %s", settings.metronome_base_url)
    worker.run(stop)
    queue.close()
    if sandbox:
        sandbox.stop()
    log.info("delivery worker stopped: %s", dict(worker.stats))
    return 0


def _sandbox(args) -> int:
    from .sandbox import SandboxServer

    server = SandboxServer(args.host, args.port, tokens=tuple(args.token or (SANDBOX_TOKEN,)))
    log.info("Metronome sandbox on %s/v1/ingest (tokens: %d)", server.url, len(server.state.tokens))
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
