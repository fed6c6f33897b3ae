"""gunicorn, configured once from settings: used by `gunicorn -c python:destination.gunicorn_config`
(the Procfile's web line) and by `metronome-destination serve`.

Hooks: every web process may run a delivery thread (DELIVER_IN_WEB, which `serve` turns on);
on SIGTERM it stops claiming, lets the requests in flight finish within the grace period and hands
back what it could not send.
"""
from __future__ import annotations

import logging
import threading

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.config import KNOWN_SETTINGS

log = logging.getLogger("destination.serve")
_GUNICORN_SETTINGS = {setting.name for setting in KNOWN_SETTINGS}  # they differ between versions
GRACEFUL_TIMEOUT_S = 25  # Heroku-style platforms SIGKILL 30 s after SIGTERM


class JsonLogs(glogging.Logger):
    """gunicorn's own messages go through our redacting JSON handler like every other line."""

    def setup(self, cfg):
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            logger.handlers[:] = []
            logger.propagate = True


def gunicorn_options(settings) -> dict:
    options = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.web_concurrency,
        # gthread, reading each request whole before a thread takes it (request_buffer.py)
        "worker_class": "destination.request_buffer.BufferingThreadWorker",
        "threads": settings.web_threads,
        "timeout": settings.web_timeout,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "keepalive": 5,
        # Each process listens on its own socket and the kernel spreads new connections over them.
        # On one shared socket, whichever process woke first took nearly a whole burst of
        # keep-alive connections (15 of 16 measured): one process, one core under the GIL, did
        # the work while the others idled.
        "reuse_port": True,
        "accesslog": None,  # the app writes one JSON access line per request, with its request id
        "logger_class": JsonLogs,
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        "child_exit": child_exit,
    }
    # gunicorn 25.1+ opens a control socket (scale or stop workers) at one path per user,
    # ~/.gunicorn/gunicorn.ctl, shared by every gunicorn that user runs, and stops and restarts
    # its thread around every fork. Nothing here uses it; the platform manages processes.
    if "control_socket_disable" in _GUNICORN_SETTINGS:
        options["control_socket_disable"] = True
    return options


def post_worker_init(worker) -> None:
    runtime = worker.wsgi.extensions["destination"]
    worker.read_timeout_s = runtime.settings.request_read_timeout_seconds
    worker.max_body = runtime.settings.max_request_bytes
    if not runtime.settings.deliver_in_web:
        return
    from destination.worker.build import build_worker

    delivery = build_worker(runtime.settings, runtime.queue)
    stop = threading.Event()
    thread = threading.Thread(target=delivery.run, args=(stop,), name="delivery", daemon=True)
    thread.start()
    worker._delivery = (delivery, stop, thread)


def worker_exit(server, worker) -> None:
    delivery, stop, thread = getattr(worker, "_delivery", (None, None, None))
    if delivery:
        stop_delivery(delivery, stop, thread, delivery_grace(worker))
    try:  # the last second of this process's accept counts, for the Delivery view
        worker.wsgi.extensions["destination"].queue.flush_counts()
    except Exception:
        log.warning("could not write this process's last Delivery view counts", exc_info=True)


def child_exit(server, worker) -> None:
    from destination.ops import metrics

    metrics.mark_process_dead(worker.pid)


def delivery_grace(worker) -> float:
    return worker.wsgi.extensions["destination"].settings.shutdown_grace_seconds


def stop_delivery(delivery, stop: threading.Event, thread: threading.Thread, grace_s: float) -> bool:
    """Stop claiming; wait up to `grace_s` for the requests in flight; hand back what is still out.

    Returns True when the delivery thread finished by itself.
    """
    stop.set()
    thread.join(grace_s)
    if thread.is_alive():
        log.warning("a Metronome request outlived the %.0fs shutdown grace; its batch goes back to the queue", grace_s)
        delivery.release_claim()
        return False
    return True


class Server(BaseApplication):
    """gunicorn from code, for `metronome-destination serve`."""

    def __init__(self, settings):
        self.settings = settings
        super().__init__()

    def load_config(self):
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)

    def load(self):
        # Built in each worker after the fork, so no database connection crosses a fork.
        from destination.app import create_app
        from destination.startup import settled

        app = create_app(self.settings)
        settled()
        return app
