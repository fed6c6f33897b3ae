"""Build the Flask app: `create_app` is the only way, so tests and servers wire it the same."""
from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from . import logs, metrics
from .config import Settings
from .errors import ConfigError, RequestError
from .health import readiness
from .mapping_store import MappingStore
from .queue import Queue, open_queue

log = logging.getLogger("destination.app")
access = logging.getLogger("destination.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass
class Runtime:
    """What request handlers share: settings, the store, the live mappings and the clock."""

    settings: Settings
    queue: Queue
    mappings: MappingStore
    clock: Callable[[], float] = field(default=time.time)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


def create_app(settings: Settings, queue: Queue | None = None, clock: Callable[[], float] = time.time) -> Flask:
    app = Flask("destination")
    # Werkzeug refuses larger bodies with 413 before we read them (compressed size).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    queue = queue or open_queue(settings)
    mappings = MappingStore(queue, settings.mappings_path, clock)
    try:
        mappings.seed()
    except ConfigError:
        raise  # an invalid shipped mapping stops startup, saying where
    except Exception:  # the database is down: start anyway, so /readyz can say so; seeding retries on use
        log.exception("could not read the stored mappings at startup; will retry")
    runtime = Runtime(settings, queue, mappings, clock)
    app.extensions["destination"] = runtime

    from .admin import blueprint as admin  # operators and admins; auth: ADMIN_TOKENS
    from .admin_page import blueprint as admin_page  # the page holds no data; it calls /admin with the token
    from .receive import blueprint as receive  # the CDP-facing surface; auth: write keys (authenticate.py)

    app.register_blueprint(receive)
    app.register_blueprint(admin)
    app.register_blueprint(admin_page)
    _observe_requests(app)

    @app.get("/healthz")
    def healthz():
        return _json({"status": "ok"}, 200)

    @app.get("/readyz")
    def readyz():
        ready, checks = readiness(runtime.queue, runtime.now_ms(), settings.ready_max_pending_age_seconds)
        return _json({"status": "ready" if ready else "not_ready", "checks": checks}, 200 if ready else 503)

    @app.get("/metrics")
    def metrics_page():
        body, content_type = metrics.exposition(runtime.queue, runtime.now_ms())
        return Response(body, 200, content_type=content_type)

    @app.errorhandler(RequestError)
    def request_error(error: RequestError):
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
        return _refused(error.body(), error.status, headers)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        return _refused({"code": code, "message": error.description or error.name}, error.code or 500)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error")
        return _refused({"code": "internal_error", "message": "internal error; nothing was accepted, retry later"}, 500,
                        {"Retry-After": "5"})

    return app


def _observe_requests(app: Flask) -> None:
    """A request id on every request (the platform's X-Request-Id if sane) and one access line each."""

    @app.before_request
    def start():
        offered = request.headers.get("X-Request-Id", "")
        g.request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        g.started = time.perf_counter()
        logs.request_id.set(g.request_id)

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        if request.path not in ("/healthz", "/metrics"):
            access.info("%s %s %s", request.method, request.path, response.status_code, extra={"fields": {
                "status": response.status_code,
                "ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
                "bytes_in": request.content_length or 0,
            }})
        return response

    @app.teardown_request
    def forget(_exc):
        logs.request_id.set(None)


def _refused(body: dict, status: int, headers: dict | None = None) -> Response:
    metrics.REQUESTS_REFUSED.labels(body["code"]).inc()
    return _json(body, status, headers)


def _json(body: dict, status: int, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers or {}, mimetype="application/json")
