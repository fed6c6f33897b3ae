"""Build the Flask app: `create_app` is the only way, so tests and servers wire it the same."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from .config import Settings
from .errors import RequestError
from .mapping import MappingSet, load_mapping_set
from .queue import Queue, open_queue

log = logging.getLogger("destination.app")


@dataclass
class Runtime:
    """What request handlers share: settings, the store, the live mappings and the clock."""

    settings: Settings
    queue: Queue
    mapping_set: MappingSet
    clock: Callable[[], float] = field(default=time.time)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


def create_app(settings: Settings, queue: Queue | None = None, clock: Callable[[], float] = time.time) -> Flask:
    app = Flask("destination")
    # Werkzeug refuses larger bodies with 413 before we read them (compressed size).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    runtime = Runtime(settings, queue or open_queue(settings), load_mapping_set(settings.mappings_path), clock)
    app.extensions["destination"] = runtime

    from .receive import blueprint as receive  # the CDP-facing surface; auth: write keys (authenticate.py)

    app.register_blueprint(receive)

    @app.get("/healthz")
    def healthz():
        return _json({"status": "ok"}, 200)

    @app.errorhandler(RequestError)
    def request_error(error: RequestError):
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
        return _json(error.body(), error.status, headers)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        return _json({"code": code, "message": error.description or error.name}, error.code or 500)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error")
        return _json({"code": "internal_error", "message": "internal error; nothing was accepted, retry later"}, 500,
                     {"Retry-After": "5"})

    return app


def _json(body: dict, status: int, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers or {}, mimetype="application/json")
