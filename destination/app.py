"""Build the Flask app: `create_app` is the only way, so tests and servers wire it the same."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import orjson
from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider

from destination.billing.catalog import CatalogCache
from destination.billing.judge import BillingCheck
from destination.config import Settings
from destination.errors import ConfigError
from destination.intake.pipeline import Sampler
from destination.mapping.versions import MappingStore
from destination.ops import logs, metrics, observe
from destination.ops.health import readiness
from destination.payload import exact
from destination.payload.validate import Limits
from destination.queue.connect import open_queue
from destination.queue.outbox import Queue

log = logging.getLogger("destination.app")


@dataclass
class Runtime:
    """What request handlers share: settings, the store, the live mappings and the clock."""

    settings: Settings
    queue: Queue
    mappings: MappingStore
    clock: Callable[[], float] = field(default=time.time)
    sampler: Sampler = field(default_factory=Sampler)  # which requests leave events for previews
    billing: BillingCheck | None = None  # BILLING_CHECK warn or hold; None when off

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    @cached_property
    def secrets(self) -> tuple[bytes, ...]:
        """Every credential this deployment knows, to strip from raw events before they are stored."""
        found = {*self.settings.write_keys, *self.settings.webhook_secrets, *self.settings.admin_tokens,
                 self.settings.metronome_api_token or ""}
        return tuple(sorted((s.encode() for s in found if len(s) >= 8), key=len, reverse=True))

    @cached_property
    def limits(self) -> Limits:
        return Limits(self.settings.max_event_bytes, self.settings.max_property_value_bytes)


class ExactJSON(DefaultJSONProvider):
    """Answers keep every number exactly as it was read. Flask's own provider writes a Decimal
    (exact.loads gives one for a number a double cannot hold) as a JSON string: a mapping's
    operand 12345678901234567890123 came back as "12345678901234567890123", and a document saved
    from that answer compared events' numbers with text, and silently matched nothing."""

    def dumps(self, obj, **kwargs) -> str:
        return exact.dumps(obj).decode()


def create_app(settings: Settings, queue: Queue | None = None, clock: Callable[[], float] = time.time) -> Flask:
    app = Flask("destination")
    app.json = ExactJSON(app)
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
    billing = None
    if settings.billing_check != "OFF":
        billing = BillingCheck(settings.billing_check.lower(), CatalogCache(queue, clock))
    runtime = Runtime(settings, queue, mappings, clock, billing=billing)
    app.extensions["destination"] = runtime

    from destination.admin.api import blueprint as admin  # operators and admins; auth: ADMIN_TOKENS
    from destination.admin.page import blueprint as admin_page  # the page holds no data; it calls /admin with the token
    from destination.intake.routes import ReceiveRoutes  # the CDP-facing surface; auth: write keys (authenticate.py)

    app.register_blueprint(admin)
    app.register_blueprint(admin_page)
    _observe_requests(app)
    # The CDP's routes run ahead of Flask, as a bare WSGI layer: see ReceiveRoutes for why.
    app.wsgi_app = ReceiveRoutes(app.wsgi_app, runtime)

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

    @app.errorhandler(Exception)  # RequestError, werkzeug's HTTP errors and our bugs alike: see observe.refusal
    def refused(error: Exception):
        status, body, headers = observe.refusal(error)
        return Response(body, status, headers, mimetype="application/json")

    return app


def _observe_requests(app: Flask) -> None:
    """A request id on every request and one access line each (ops/observe.py, shared with intake/routes.py)."""

    @app.before_request
    def start():
        g.request_id = observe.request_id(request.headers.get("X-Request-Id"))
        g.started = time.perf_counter()
        logs.request_id.set(g.request_id)

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        observe.log_access(request.method, request.path, response.status_code, g.get("started", time.perf_counter()),
                           request.content_length or 0)
        return response

    @app.teardown_request
    def forget(_exc):
        logs.request_id.set(None)


def _json(body: dict, status: int, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers or {}, mimetype="application/json")
