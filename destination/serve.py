"""Run the app under gunicorn, optionally with a delivery thread in every web process."""
from __future__ import annotations

import threading

from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):
    def __init__(self, settings, options: dict, with_delivery: bool):
        self.settings = settings
        self.options = options
        self.with_delivery = with_delivery
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)
        if self.with_delivery:
            self.cfg.set("post_worker_init", _start_delivery)
            self.cfg.set("worker_exit", _stop_delivery)

    def load(self):
        # Built in each worker after the fork, so no database connection crosses a fork.
        from .app import create_app

        return create_app(self.settings)


def _start_delivery(worker) -> None:
    from .delivery import build_worker

    app = worker.wsgi
    runtime = app.extensions["destination"]
    delivery = build_worker(runtime.settings, runtime.queue)
    stop = threading.Event()
    thread = threading.Thread(target=delivery.run, args=(stop,), name="delivery", daemon=True)
    thread.start()
    worker._delivery = (stop, thread)


def _stop_delivery(server, worker) -> None:
    stop, thread = getattr(worker, "_delivery", (None, None))
    if stop:
        stop.set()
        thread.join(timeout=25)


def run_gunicorn(settings, workers: int = 1, with_delivery: bool = True) -> None:
    options = {
        "bind": f"{settings.host}:{settings.port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": 8,
        "timeout": 30,
        "graceful_timeout": 25,
        "accesslog": None,
    }
    _Gunicorn(settings, options, with_delivery).run()
